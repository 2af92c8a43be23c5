"""The sharpness probe against the Hessian PyTorch builds whole (torch.autograd.functional.hessian)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from training import sharpness as SH
from training.config import Config
from training.engine import Trainer
from training.models import MLP


def dense_hessian(model: nn.Module, loss_fn, x, y) -> torch.Tensor:
    """The loss's Hessian over every parameter, flattened in ``named_parameters()`` order, in float64."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).double()
    model64 = model.double()

    def f(w):
        parts = {n: t.view(s) for n, t, s in zip(names, torch.split(w, sizes), shapes, strict=True)}
        return loss_fn(functional_call(model64, parts, (x.double(),)), y)

    h = torch.autograd.functional.hessian(f, flat)
    model.float()
    return h


def tiny_mlp(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = MLP(5, (7, 6), 3, nn.Tanh)
    return model, torch.randn(40, 5), torch.randint(3, (40,))


def test_probe_finds_the_top_hessian_eigenvalue_within_one_percent():
    model, x, y = tiny_mlp()
    loss_fn = nn.functional.cross_entropy
    probe = SH.Probe(model, list(model.parameters()), loss_fn, (x, y), seed=0, iterations=200, tolerance=1e-7)
    got, = probe.measure()
    want = float(torch.linalg.eigvalsh(dense_hessian(model, loss_fn, x, y)).max())
    assert want > 0
    assert got == pytest.approx(want, rel=0.01)


def test_a_recurrent_trainer_records_the_top_eigenvalue_of_its_loss_on_the_probe_batch():
    cfg = Config(model="rnn", activation="tanh", dataset="adding", hidden_size=4, seq_len=6, sharpness_every=1,
                 lr=0.05)
    t = Trainer(cfg, "cpu")
    t.sharpness.iterations, t.sharpness.tolerance = 300, 1e-8
    for _ in range(3):
        t.step()  # away from init, so the weights are not the ones the probe's start was drawn for
    x, y = t.sharpness.batch
    want = float(torch.linalg.eigvalsh(dense_hessian(t.model, t.loss_fn, x, y)).max())
    rec = t.step()
    assert rec.flat[t.columns.index("sharpness")] == pytest.approx(want, rel=0.01)


def test_a_dominant_negative_eigenvalue_does_not_hide_the_largest_positive_one():
    # L(w) = ½ wᵀAw with eigenvalues -5, 2, 1: plain power iteration converges to -5; the sharpness is 2.
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))[0]
    a = q @ torch.diag(torch.tensor([-5.0, 2.0, 1.0])) @ q.T

    class Quadratic(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x, probe=None):
            return self.w

    m = Quadratic()
    probe = SH.Probe(m, [m.w], lambda w, _: 0.5 * w @ a @ w, (None, None), seed=0, iterations=500, tolerance=1e-9)
    assert probe.measure()[0] == pytest.approx(2.0, rel=1e-3)


def test_adams_preconditioned_sharpness_is_the_top_eigenvalue_of_p_inverse_h():
    model, x, y = tiny_mlp(1)
    loss_fn = nn.functional.cross_entropy
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    probe = SH.Probe(model, params, loss_fn, (x, y), seed=0, iterations=300, tolerance=1e-8)
    raw, pre = probe.measure(opt)
    h = dense_hessian(model, loss_fn, x, y)
    beta2, eps = opt.param_groups[0]["betas"][1], opt.param_groups[0]["eps"]
    # P = √v̂ + ε, as torch.optim.Adam divides by it
    p = torch.cat([(opt.state[q]["exp_avg_sq"].double().sqrt() / math.sqrt(1 - beta2 ** float(opt.state[q]["step"]))
                    + eps).flatten() for q in params])
    want = float(torch.linalg.eigvals(torch.diag(1 / p) @ h).real.max())
    assert raw == pytest.approx(float(torch.linalg.eigvalsh(h).max()), rel=0.01)
    assert pre == pytest.approx(want, rel=0.01)
    assert pre > 10 * raw  # Adam's steps are large along directions of small v̂: its edge is 38/lr, not 2/lr


def test_preconditioned_sharpness_is_nan_before_adams_first_update():
    t = Trainer(Config(optimizer="adam", hidden_sizes=(16,), sharpness_every=1, lr=1e-3), "cpu")
    first = t.step().flat
    assert t.columns[-2:] == ["sharpness", "sharpness_precond"]
    assert first[-2] > 0 and math.isnan(first[-1])
    assert np.isfinite(t.step().flat[-2:]).all()


def test_warm_start_needs_fewer_products_than_the_first_probe():
    t = Trainer(Config(hidden_sizes=(32,), activation="tanh", sharpness_every=1, lr=0.01), "cpu")
    t.step()
    first = t.sharpness.products
    t.step()
    assert t.sharpness.products - first < first / 2


def test_the_probe_changes_nothing_the_run_records():
    """Same losses and norms, bit for bit, with the probe on every step and off; batch norm's running statistics
    too; only the sharpness column is added."""
    base = Config(hidden_sizes=(32, 32), norm="batch", optimizer="momentum", lr=0.05, probe_every=3)
    off, on = Trainer(base, "cpu"), Trainer(base.replace(sharpness_every=1), "cpu")
    for _ in range(6):
        a, b = off.step(), on.step()
        np.testing.assert_array_equal(a.flat, b.flat[:-1])
    assert on.columns == [*off.columns, "sharpness"]
    for (_, x), (_, y) in zip(off.model.named_buffers(), on.model.named_buffers(), strict=True):
        assert torch.equal(x, y)


def test_off_records_no_column_and_probes_only_on_its_schedule():
    assert "sharpness" not in Trainer(Config(hidden_sizes=(8,)), "cpu").columns
    t = Trainer(Config(hidden_sizes=(8,), sharpness_every=3), "cpu")
    values = [t.step().flat[-1] for _ in range(7)]
    assert [i for i, v in enumerate(values) if not math.isnan(v)] == [0, 3, 6]


def test_a_full_batch_run_probes_the_whole_training_set():
    t = Trainer(Config(hidden_sizes=(8,), batch_size=0, loss="mse", sharpness_every=1), "cpu")
    x, y = t.sharpness.batch
    assert x is t.data.x_train and y is t.data.y_train


def test_edges_of_stability():
    assert SH.edge("sgd", 0.1) == pytest.approx(20.0)
    assert SH.edge("momentum", 0.1, momentum=0.9) == pytest.approx(38.0)  # (2 + 2β)/η
    assert SH.edge("adam", 1e-3) == pytest.approx(38_000.0)  # (2 + 2β1)/((1 - β1)η), Cohen et al. 2022's 38/η
    assert SH.edge_column("adam") == "sharpness_precond" and SH.edge_column("sgd") == "sharpness"
