"""Adaptive gradient clipping, checked against the paper's formula written out per unit in plain PyTorch."""

import copy
import math

import pytest
import torch

from training.config import Config, ConfigError
from training.engine import Trainer

MLP = {"hidden_sizes": (32, 16), "batch_size": 16, "init": "normal", "init_std": 0.3}
LSTM = {"model": "lstm", "activation": "tanh", "dataset": "adding", "seq_len": 6, "hidden_size": 8, "batch_size": 8}
EPS = 1e-3


def _paper_agc(name: str, w: torch.Tensor, g: torch.Tensor, lam: float) -> torch.Tensor:
    """Brock et al. 2021, one unit at a time: a row of a matrix, a whole 1-D vector; the head untouched."""
    if name.startswith("head."):
        return g.clone()
    units_w, units_g = (w, g) if w.ndim > 1 else (w[None], g[None])
    out = []
    for wi, gi in zip(units_w, units_g, strict=True):
        limit = lam * max(wi.norm().item(), EPS)
        gn = gi.norm().item()
        out.append(gi * (limit / gn) if gn / max(wi.norm().item(), EPS) > lam else gi.clone())
    return torch.stack(out).reshape(g.shape)


def _raw_grads(t: Trainer, batch) -> list[torch.Tensor]:
    model = copy.deepcopy(t.model)
    t.loss_fn(model(batch[0]), batch[1]).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("changes", [MLP, LSTM], ids=["mlp", "lstm"])
def test_clipped_gradients_equal_the_papers_formula(changes):
    lam = 0.02
    t = Trainer(Config(**changes, clip="agc", clip_threshold=lam, lr=0.05), "cpu")
    with torch.no_grad():  # one unit below ε: its limit is λ·ε, not λ·‖W_i‖
        t.params[0][1].mul_(1e-5)
    assert 0 < t.params[0][1].norm().item() < EPS
    for _ in range(3):  # weights that have moved too
        batch = t.sample()
        raw = _raw_grads(t, batch)
        weights = [p.detach().clone() for p in t.params]
        expected = [_paper_agc(n, w, g, lam) for n, w, g in zip(t.names, weights, raw, strict=True)]
        rec = t.step(batch)
        for name, p, e in zip(t.names, t.params, expected, strict=True):
            # float32 precision at the tensor's scale (the LSTM's backward in a copy differs in the last bits)
            torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-6 * e.abs().max().item(), msg=name)
        assert rec.clipped
        assert rec.grad_norm_pre_clip == pytest.approx(math.sqrt(sum(g.norm().item() ** 2 for g in raw)), rel=1e-6)
        assert rec.grad_norm_post_clip == pytest.approx(math.sqrt(sum(e.norm().item() ** 2 for e in expected)),
                                                        rel=1e-5)
        assert rec.grad_norm_post_clip < rec.grad_norm_pre_clip


@pytest.mark.parametrize("changes", [MLP, LSTM], ids=["mlp", "lstm"])
def test_the_heads_gradients_are_untouched(changes):
    cfg = Config(**changes, clip_threshold=1e-4)
    plain, agc = Trainer(cfg, "cpu"), Trainer(cfg.replace(clip="agc"), "cpu")
    batch = plain.sample()
    plain.step(batch)
    assert agc.step(batch).clipped
    for name, p, q in zip(plain.names, plain.params, agc.params, strict=True):
        assert torch.equal(p.grad, q.grad) == name.startswith("head."), name


def test_the_unit_below_eps_is_clipped_against_eps():
    t = Trainer(Config(**MLP, clip="agc", clip_threshold=0.01), "cpu")
    with torch.no_grad():
        t.params[0][1].mul_(1e-5)
    batch = t.sample()
    assert _raw_grads(t, batch)[0][1].norm().item() > 0.01 * EPS  # so the ε floor is what bounds it
    t.step(batch)
    assert t.params[0].grad[1].norm().item() == pytest.approx(0.01 * EPS, rel=1e-5)


def test_a_step_with_every_ratio_below_lambda_is_bit_identical_and_not_clipped():
    cfg = Config(**{**MLP, "init": "pytorch_default"}, clip_threshold=10.0)  # its biases are not zero
    plain, agc = Trainer(cfg.replace(clip="none"), "cpu"), Trainer(cfg.replace(clip="agc"), "cpu")
    batch = plain.sample()
    ratios = [g.norm(dim=1 if w.ndim > 1 else 0) / w.norm(dim=1 if w.ndim > 1 else 0).clamp_min(EPS)
              for n, w, g in zip(agc.names, agc.params, _raw_grads(agc, batch), strict=True) if n[:5] != "head."]
    assert max(r.max().item() for r in ratios) < 10.0
    a, b = plain.step(batch), agc.step(batch)
    assert not b.clipped and b.grad_norm_post_clip == b.grad_norm_pre_clip == a.grad_norm_pre_clip
    for p, q in zip(plain.params, agc.params, strict=True):
        assert torch.equal(p.grad, q.grad) and torch.equal(p, q)


def test_live_switching_to_and_from_agc():
    t = Trainer(Config(**MLP), "cpu")
    assert not t.step().clipped
    t.set_clip("agc", 1e-3)
    rec = t.step()
    assert rec.clipped and rec.grad_norm_post_clip < rec.grad_norm_pre_clip and rec.clip_norm is None
    t.set_clip("norm", 1e6)
    rec = t.step()
    assert not rec.clipped and rec.clip_norm is not None
    t.set_clip("agc", 1e-3)
    assert t.step().clipped
    t.set_clip("none")
    rec = t.step()
    assert not rec.clipped and rec.grad_norm_post_clip == rec.grad_norm_pre_clip


def test_agc_with_adam_measures_the_update_it_applied():
    t = Trainer(Config(**{**MLP, "init": "pytorch_default"}, clip="agc", clip_threshold=1e-3, optimizer="adam"), "cpu")
    rec = t.step()
    assert rec.clipped and rec.applied and all(0 < r < math.inf for r in rec.update_ratios)


@pytest.mark.parametrize("threshold", [1e-5, 20.0])
def test_threshold_out_of_agc_range_is_refused_naming_the_field(threshold):
    with pytest.raises(ConfigError, match="clip_threshold.*clip=agc: 0.0001 to 10"):
        Config(clip="agc", clip_threshold=threshold)
    Config(clip="norm", clip_threshold=threshold)  # the other modes keep their range
