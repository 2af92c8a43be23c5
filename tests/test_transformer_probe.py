"""The transformer's per-probe attention (training/transformer.py ``attention_probe``, in the engine's probe dict):
entropy per head and the most peaked head's pattern, against a plain recomputation from the attention weights."""

import math

import numpy as np
import pytest

from training.config import Config
from training.engine import Trainer
from training.transformer import PATTERN

SMALL = {"model": "transformer", "dataset": "pycode", "d_model": 32, "n_heads": 4, "context": 48, "batch_size": 3,
         "n_layers": 2, "probe_every": 5}


@pytest.mark.parametrize("changes", [{}, {"norm_position": "post", "qk_norm": True}])
def test_entropy_per_head_and_the_most_peaked_heads_pattern_equal_a_plain_recomputation(changes):
    t = Trainer(Config(**{**SMALL, **changes}), "cpu")
    for b in t.model.blocks:
        b.attn.keep = True
    probe = t.step().probe
    entropy = np.array([[-np.mean([sum(v * math.log(v) for v in b.attn.last_weights[n, h, q, :q + 1].double().tolist()
                                       if v > 0) for n in range(3) for q in range(48)])
                         for h in range(4)] for b in t.model.blocks])  # (layers, heads): mean over rows
    np.testing.assert_allclose(probe["attn_head_entropy"], entropy, rtol=1e-5)
    layer, head = np.unravel_index(np.argmin(entropy), entropy.shape)
    assert (probe["attn_pattern_layer"], probe["attn_pattern_head"]) == (layer, head)
    weights = t.model.blocks[layer].attn.last_weights[0, head, :PATTERN, :PATTERN].numpy()
    np.testing.assert_array_equal(probe["attn_pattern"], weights)
    assert probe["attn_pattern"].shape == (PATTERN, PATTERN) and np.allclose(probe["attn_pattern"].sum(1), 1, atol=1e-5)


def test_only_probe_steps_carry_the_attention_probe():
    t = Trainer(Config(**SMALL), "cpu")
    recs = [t.step() for _ in range(6)]
    assert [r.probe is not None for r in recs] == [True, False, False, False, False, True]
    assert "attn_head_entropy" in recs[5].probe and recs[5].probe["step"] == 5


def test_per_layer_entropy_is_the_mean_of_the_heads_entropy():
    t = Trainer(Config(**SMALL), "cpu")
    rec = t.step()
    row = dict(zip(t.columns, rec.row(), strict=True))
    np.testing.assert_allclose([row["attn_entropy/0"], row["attn_entropy/1"]],
                               rec.probe["attn_head_entropy"].mean(axis=1), rtol=1e-6)
