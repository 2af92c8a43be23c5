"""The transformer (training/transformer.py) through the engine: shapes, causality, the loss at init, each measure
against a plain recomputation from the attention weights, the z-loss, the learning-rate schedule, and the CLI."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from training import registry as R
from training import schedule
from training import transformer as TF
from training.cli import main
from training.config import Config, ConfigError
from training.engine import Trainer
from training.text import VOCAB_SIZE

SMALL = {"model": "transformer", "dataset": "pycode", "d_model": 32, "n_heads": 4, "context": 16, "batch_size": 4}
VARIANTS = [{}, {"norm_position": "post"}, {"qk_norm": True}, {"positions": "sinusoidal"},
            {"tie_embeddings": False, "n_layers": 3, "n_heads": 1, "activation": "gelu"}]


def trainer(**changes) -> Trainer:
    return Trainer(Config(**{**SMALL, **changes}), "cpu")


@pytest.mark.parametrize("changes", VARIANTS)
def test_shapes_and_the_parameter_count(changes):
    t = trainer(**changes)
    x, y = t.sample()
    assert x.shape == (4, 16) and y.shape == (64,)
    assert t.model(x).shape == (64, VOCAB_SIZE)
    assert R.param_count(t.cfg, VOCAB_SIZE, VOCAB_SIZE) == sum(p.numel() for p in t.params)
    assert t.names[0] == "tok.weight" and ("head.weight" in t.names) != t.cfg.tie_embeddings


@pytest.mark.parametrize("changes", VARIANTS)
def test_no_position_sees_a_later_one(changes):
    t = trainer(**changes)
    t.model.eval()
    x, _ = t.sample()
    for j in (1, 7, 15):
        x2 = x.clone()
        x2[:, j] = (x2[:, j] + 1) % VOCAB_SIZE
        a, b = t.model(x).view(4, 16, -1), t.model(x2).view(4, 16, -1)
        assert torch.equal(a[:, :j], b[:, :j])  # bit for bit: every earlier output is untouched
        assert not torch.allclose(a[:, j], b[:, j])  # the changed position itself does move


@pytest.mark.parametrize("changes", VARIANTS)
def test_the_loss_at_init_is_ln_of_the_vocabulary(changes):
    rec = trainer(**changes).step()
    assert abs(rec.loss / math.log(VOCAB_SIZE) - 1) < 0.03, rec.loss


def attention_inputs(t: Trainer, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of each block's attention, by hooks on the attention modules."""
    seen = []
    hooks = [b.attn.register_forward_pre_hook(lambda m, args: seen.append(args[0])) for b in t.model.blocks]
    t.model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("changes", VARIANTS)
def test_each_measure_equals_a_plain_recomputation(changes):
    t = trainer(**changes)
    for b in t.model.blocks:
        b.attn.keep = True
    x, y = t.sample()
    rec = t.step((x, y))
    row = dict(zip(t.columns, rec.row(), strict=True))
    for i, block in enumerate(t.model.blocks):
        a = block.attn
        p = a.last_weights.double()  # (batch, heads, T, T), softmax rows
        s = a.last_scores.double()
        allowed = torch.tril(torch.ones(16, 16, dtype=torch.bool))
        # the softmax of the allowed scores, recomputed here, is the weights the model used
        manual = torch.where(allowed, s, torch.tensor(-math.inf, dtype=torch.float64)).softmax(-1)
        torch.testing.assert_close(manual, p)
        assert (p[..., ~allowed] == 0).all()
        largest = max(float(s[b, h, q, k]) for b in range(4) for h in range(a.heads) for q in range(16)
                      for k in range(q + 1))
        assert row[f"attn_logit_max/{i}"] == pytest.approx(largest, rel=1e-6)
        entropy = -np.mean([sum(float(v) * math.log(float(v)) for v in p[b, h, q, :q + 1] if v > 0)
                            for b in range(4) for h in range(a.heads) for q in range(16)])
        assert row[f"attn_entropy/{i}"] == pytest.approx(entropy, rel=1e-5)
    assert row["attn_entropy/0"] < math.log(16)  # a row over q + 1 positions has entropy at most ln(q + 1)


@pytest.mark.parametrize(("gap", "diagonal_anchor"), [(0.0, True), (30.0, True), (60.0, False), (200.0, False)])
def test_the_layer_measures_hold_as_attention_collapses(gap, diagonal_anchor):
    """log Z is read at each row's own position while its weight is above ``SEEN`` and at the row's largest weight
    once it is not: either way the entropy is -Σ p log p of the float64 softmax, and the largest logit the largest
    allowed one. ``gap`` pulls every row's first position (which every position sees) ahead of the rest."""
    t = 12
    raw = torch.randn(3, 2, t, t, generator=torch.Generator().manual_seed(0)) * 2
    raw[..., 0] += gap
    future = torch.ones(t, t, dtype=torch.bool).triu(1)
    scores = raw.masked_fill(future, torch.finfo(raw.dtype).min)
    weights = scores.softmax(-1)
    assert bool(weights.diagonal(dim1=-2, dim2=-1).amin() > TF.SEEN) == diagonal_anchor
    largest, log_z_sum, ps_sum = TF.layer_measures(scores, weights)
    entropy = TF.mean_entropy(float(log_z_sum), float(ps_sum), 3 * 2 * t)
    p = raw.double().masked_fill(future, -math.inf).softmax(-1)
    want = -torch.where(p > 0, p * p.log(), torch.zeros((), dtype=torch.float64)).sum(-1).mean()
    assert float(largest) == float(raw.masked_fill(future, -math.inf).amax())
    # log Z - Σ p·s: a difference of numbers the size of the logits, exact to float32's 2^-23 of them
    assert float(entropy) == pytest.approx(float(want), abs=4 * 2.0 ** -23 * max(1.0, float(largest)))
    assert (gap == 0) == (float(want) > 0.1)  # the pulled cases are collapsed: near-zero entropy


def test_the_attention_logits_are_the_scaled_products_of_queries_and_keys():
    t = trainer(qk_norm=True)
    a = t.model.blocks[0].attn
    a.keep = True
    x, _ = t.sample()
    seen = attention_inputs(t, x)
    with torch.no_grad():
        q, k, _ = a.qkv(seen[0]).split(32, dim=-1)
        q, k = (z.view(4, 16, 4, 8).transpose(1, 2) for z in (q, k))
        q, k = a.q_norm(q), a.k_norm(k)
        for bi, h, qi, ki in [(0, 0, 5, 2), (3, 3, 15, 15), (1, 2, 9, 0)]:
            want = float(q[bi, h, qi] @ k[bi, h, ki]) / math.sqrt(8)
            assert float(a.last_scores[bi, h, qi, ki]) == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_log_z_and_the_z_loss():
    x, y = trainer().sample()
    plain, zl = trainer(), trainer(z_loss=0.5)
    a, b = plain.step((x, y)), zl.step((x, y))
    assert a.loss == b.loss  # the loss column is the cross-entropy alone
    fresh = trainer(z_loss=0.5)  # same seed: the weights b started from
    logits = fresh.model(x)
    lse = torch.logsumexp(logits.detach().double(), dim=-1)
    assert dict(zip(zl.columns, b.row(), strict=True))["logit_log_z"] == pytest.approx(float(lse.mean()), rel=1e-5)
    # without the z-loss, log Z is read off the cross-entropy: the same number
    assert dict(zip(plain.columns, a.row(), strict=True))["logit_log_z"] == pytest.approx(float(lse.mean()), rel=1e-5)
    objective = torch.nn.functional.cross_entropy(logits, y) + 0.5 * torch.logsumexp(logits, -1).square().mean()
    objective.backward()
    assert b.grad_norms[0] == pytest.approx(float(fresh.params[0].grad.norm()), rel=1e-5)
    assert a.grad_norm_pre_clip != pytest.approx(b.grad_norm_pre_clip, rel=1e-2)  # the z-loss does change the gradients


def test_the_lr_column_shows_warmup_then_cosine_decay():
    t = trainer(optimizer="adamw", lr=0.01, warmup_steps=4, schedule="cosine", steps=12, weight_decay=0.1)
    lrs = [t.step().lr for _ in range(12)]
    want = [0.01 * schedule.lr_factor(4, "cosine", 12, s) for s in range(12)]
    assert lrs == want and lrs[:4] == [0.0025, 0.005, 0.0075, 0.01] and lrs[4] == 0.01 and lrs[-1] < 0.0005
    assert [g["weight_decay"] for g in t.optimizer.param_groups] == [0.1, 0.0]
    assert all(p.dim() >= 2 for p in t.optimizer.param_groups[0]["params"])


def test_other_models_keep_their_columns_and_schedule_free_lr():
    t = Trainer(Config(hidden_sizes=(8,), dataset="gaussian"), "cpu")
    assert not any(c.startswith(("attn_", "logit_")) for c in t.columns) and t.step().lr == 0.01


def test_heads_must_divide_the_width():
    with pytest.raises(ConfigError, match="allowed with d_model 64: 1, 2, 4, 8") as e:
        Config(**{**SMALL, "d_model": 64, "n_heads": 3})
    assert e.value.field == "n_heads"


def test_the_cli_runs_the_transformer(tmp_path, capsys):
    out = tmp_path / "lm.csv"
    assert main(["run", "--model", "transformer", "--dataset", "pycode", "--steps", "20", "--batch-size", "8",
                 "--qk-norm", "true", "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out)
    assert len(df) == 20 and {"attn_logit_max/1", "attn_entropy/0", "logit_log_z"} <= set(df.columns)
    assert df["loss"].iloc[-1] < df["loss"].iloc[0] and np.isfinite(df["test_loss"].iloc[0])


@pytest.mark.parametrize("flag,value,needle", [
    ("--n-layers", "9", "allowed: 1 to 8"), ("--d-model", "16", "allowed: 32 to 256"),
    ("--n-heads", "0", "allowed: 1 to 8"), ("--n-heads", "5", "allowed with d_model 48: 1, 2, 3, 4, 6, 8"),
    ("--context", "300", "allowed: 16 to 256"), ("--norm-position", "middle", "allowed: pre, post"),
    ("--qk-norm", "maybe", "allowed: true or false"), ("--warmup-steps", "-1", "allowed: 0 to"),
    ("--schedule", "linear", "allowed: constant, cosine"), ("--z-loss", "-1", "allowed: 0 to 1"),
    ("--beta2", "1.5", "allowed: 0.5 to 0.99999"), ("--eps", "0", "allowed: 1e-12 to 0.01"),
    ("--weight-decay", "nan", "allowed: 0 to 1"), ("--dataset", "digits", "needs pycode"),
])
def test_bad_transformer_flags_exit_2_naming_the_field(flag, value, needle, tmp_path, capsys):
    argv = ["run", "--model", "transformer", "--dataset", "pycode", flag, value, "--out", str(tmp_path / "x.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {flag}:") and needle in err, err
