"""The transformer lessons' claims (training/registry.py PRESETS), checked through the engine's own columns.

A claim that stops holding is a lesson to change, not a test to loosen: "~10⁴" is checked as above 10³, "~2" as
below 4, "under ~20" as below 25, "~0" as below 0.05 nats, "near 0" as within 0.5."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from training import lessons as LS
from training.engine import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")




@functools.cache
def measured(name: str) -> tuple[dict, dict]:
    return LS.lm_run(LS.problem(name)), LS.lm_run(LS.fix(name))


def test_without_qk_layernorm_the_attention_logits_grow_and_attention_collapses_and_qk_layernorm_bounds_them():
    p, f = measured("attention logits grow")
    assert p["steps"] == f["steps"] == 300  # both stay finite: the loss stalls, it does not go non-finite
    assert p["first_logit"] < 4 and p["peak_logit"] > 1e3 and p["last_logit"] > 10 * p["first_logit"]
    assert p["first_entropy"] > 2.5 and p["last_entropy"] < 0.05
    assert f["peak_logit"] < 25 and f["last_entropy"] > 1.0
    assert 2.6 < p["final_loss"] < 3.0 and f["final_loss"] < 2.6 and f["final_loss"] < p["final_loss"] - 0.2


def test_log_z_drifts_up_without_z_loss_and_z_loss_holds_it_near_zero_at_the_same_loss():
    p, f = measured("log Z drifts without z-loss")
    assert abs(p["first_log_z"] - 4.6) < 0.1 and 5.2 < p["last_log_z"] < 6.5
    assert abs(f["last_log_z"]) < 0.5
    assert abs(f["final_loss"] / p["final_loss"] - 1) < 0.02
    weak = LS.lm_run(LS.problem("log Z drifts without z-loss").replace(z_loss=1e-4))  # the paper's coefficient
    assert weak["last_log_z"] > 4.5


def test_post_ln_without_warmup_stays_at_the_unigram_entropy_where_pre_ln_trains_and_warmup_alone_trains_it():
    name = "Post-LN needs warmup"
    p, f = measured(name)
    pre = LS.lm_run(LS.problem(name).replace(norm_position="pre"))  # the same lr, LayerNorm before each sublayer
    unigram = Trainer(LS.problem(name), "cpu").references[1]  # the best constant guess: character frequencies
    assert p["steps"] == f["steps"] == pre["steps"] == 300
    assert pre["final_loss"] < 2.8  # "trains to ~2.6"
    assert abs(p["final_loss"] - unigram) < 0.1 and abs(unigram - 3.14) < 0.01  # "stays at ~3.14"
    assert p["last_entropy"] > 3.0  # "its attention uniform": ~ mean ln(position + 1) over a 64-character window
    assert f["final_loss"] < 2.7 and f["final_loss"] < p["final_loss"] - 0.4  # "warmup alone brings it to ~2.5"
    # The classifier's language-model rule (training/outcome.py) names them so: at the unigram entropy is stuck.
    assert (pre["outcome"], p["outcome"], f["outcome"]) == ("learned", "stuck", "learned")


def ff_out_profile(cfg, seeds=range(4)) -> np.ndarray:
    """Step-0 gradient norm of each block's feed-forward output weight ÷ the first block's, mean over seeds."""
    ratios = []
    for seed in seeds:
        t = Trainer(cfg.replace(seed=seed), "cpu")
        row = t.step().row()
        norms = np.array([row[t.columns.index(f"grad_norm/blocks.{i}.ff.out.weight")] for i in range(cfg.n_layers)])
        ratios.append(norms / norms[0])
    return np.mean(ratios, axis=0)


def test_at_init_post_ln_gradient_norms_do_not_fall_toward_the_output_and_pre_ln_ones_do():
    post = LS.problem("Post-LN needs warmup")
    p, q = ff_out_profile(post), ff_out_profile(post.replace(norm_position="pre"))
    assert p[-1] > 0.95  # "~1.1": the output layer's no smaller than the input layer's
    assert 0.3 < q[-1] < 0.6 and np.all(np.diff(q) < 0)  # "~0.5": Pre-LN's fall at every layer toward the output
    assert p[-1] > 1.8 * q[-1]  # tilted toward the output relative to Pre-LN
