"""Mean-field theory against closed forms, Monte Carlo, and real PyTorch networks at init."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from training import registry as R
from training import theory

ACTIVATIONS = {name: (a.phi, a.dphi) for name, a in R.ACTIVATIONS.items()}  # the theory's φ and φ′, per entry
MC_SAMPLES = 2_000_000


@pytest.mark.parametrize("name", sorted(R.ACTIVATIONS))
def test_each_registry_entry_has_the_phi_and_derivative_of_its_torch_module(name):
    # The module the net is built with is the reference: the theory's numpy φ and φ′ must be its value and slope.
    x = np.linspace(-6.0, 6.0, 1200)  # even count: 0, the kink, is not on the grid
    phi, dphi = ACTIVATIONS[name]
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = R.ACTIVATIONS[name].module()(xt)
    (grad,) = torch.autograd.grad(y.sum(), xt)
    np.testing.assert_allclose(phi(x), y.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dphi(x), grad.numpy(), rtol=1e-12, atol=1e-14)


def test_the_modules_are_torchs_own_functions():
    # The modules against torch.nn.functional, so a wrong constant in an entry cannot hide behind its own formula.
    x = torch.linspace(-6.0, 6.0, 1200, dtype=torch.float64)
    for name, fn in {"relu": F.relu, "leaky_relu": F.leaky_relu, "elu": F.elu, "gelu": F.gelu, "selu": F.selu,
                     "tanh": torch.tanh, "sigmoid": torch.sigmoid}.items():
        torch.testing.assert_close(R.ACTIVATIONS[name].module()(x), fn(x), rtol=0, atol=0)


def test_the_theory_reads_every_registry_entry():
    for name, entry in R.ACTIVATIONS.items():
        assert theory._resolve(name) == (entry.phi, entry.dphi)
    with pytest.raises(ValueError, match="unknown activation"):
        theory._resolve("no_such_activation")


def test_activations_survive_extreme_inputs():
    x = np.array([-1e4, -50.0, 50.0, 1e4])
    with np.errstate(over="raise", invalid="raise"):  # no overflow from the unused branch of np.where
        for phi, dphi in ACTIVATIONS.values():
            assert np.all(np.isfinite(phi(x))) and np.all(np.isfinite(dphi(x)))


@pytest.mark.parametrize("q", [0.01, 1.0, 3.7, 100.0])
def test_relu_he_init_sits_exactly_at_the_edge_of_chaos(q):
    assert theory.chi("relu", 2.0, 0.0, q) == pytest.approx(1.0, abs=1e-12)
    assert theory.variance_map(q, "relu", 2.0, 0.0) == pytest.approx(q, rel=1e-12)


def test_quadrature_is_exact_on_kinked_closed_forms():
    relu, drelu = ACTIVATIONS["relu"]
    assert theory.gauss_expect(lambda h: drelu(h) ** 2, 1.0) == pytest.approx(0.5, abs=1e-12)
    assert theory.gauss_expect(lambda h: relu(h) ** 2, 2.5) == pytest.approx(1.25, rel=1e-12)
    assert theory.gauss_expect(np.abs, 4.0) == pytest.approx(2.0 * math.sqrt(2.0 / math.pi), rel=1e-12)
    assert theory.gauss_expect(lambda h: h**4, 3.0) == pytest.approx(27.0, rel=1e-12)
    assert theory.gauss_expect(np.cos, 0.0) == pytest.approx(1.0)  # q = 0: a point mass at 0


def _quad_expect(f, q):
    # independent reference: adaptive quadrature on each half-line, split at the kink
    dens = lambda z: f(math.sqrt(q) * z) * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)  # noqa: E731
    return (
        integrate.quad(dens, -np.inf, 0.0, epsabs=1e-13)[0]
        + integrate.quad(dens, 0.0, np.inf, epsabs=1e-13)[0]
    )


@pytest.fixture(scope="module")
def normal_samples():
    return np.random.default_rng(0).standard_normal(MC_SAMPLES)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("q", [0.5, 2.0])
def test_gauss_expect_matches_monte_carlo_and_adaptive_quadrature(name, q, normal_samples):
    for fn in ACTIVATIONS[name]:
        g = lambda h, fn=fn: fn(np.asarray(h, dtype=float)) ** 2  # noqa: E731
        got = theory.gauss_expect(g, q)
        vals = g(math.sqrt(q) * normal_samples)
        # MC error is Gaussian with this standard error; 5 SE fails by chance with probability ~6e-7
        se = vals.std() / math.sqrt(vals.size)
        assert abs(got - vals.mean()) <= 5 * se + 1e-12
        assert got == pytest.approx(_quad_expect(g, q), rel=1e-9, abs=1e-12)


def test_tanh_chi_and_variance_map_match_monte_carlo(normal_samples):
    q, sw2, sb2 = 1.3, 1.7, 0.2
    h = math.sqrt(q) * normal_samples
    fwd = sw2 * np.tanh(h) ** 2 + sb2
    bwd = sw2 * (1.0 - np.tanh(h) ** 2) ** 2
    # 2e6 samples: SE ~ std/1414 ~ 4e-4 here; 5 SE bounds a chance failure at ~6e-7
    for got, vals in (
        (theory.variance_map(q, "tanh", sw2, sb2), fwd),
        (theory.chi("tanh", sw2, sb2, q), bwd),
    ):
        assert abs(got - vals.mean()) <= 5 * vals.std() / math.sqrt(vals.size)


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-6, 50.0), st.floats(0.1, 10.0), st.floats(0.0, 2.0))  # q = 0 is a point mass on the kink
def test_chi_of_piecewise_linear_units_does_not_depend_on_q(q, sw2, sb2):
    assert theory.chi("relu", sw2, sb2, q) == pytest.approx(sw2 / 2, rel=1e-12)
    assert theory.chi("leaky_relu", sw2, sb2, q) == pytest.approx(sw2 * (1 + 0.01**2) / 2, rel=1e-12)
    assert theory.chi("identity", sw2, sb2, q) == pytest.approx(sw2, rel=1e-12)


def test_fixed_point_converges_or_reports_divergence():
    assert theory.fixed_point("relu", 2.5, 0.0) == math.inf  # geometric growth
    assert theory.fixed_point("relu", 2.0, 0.01) == math.inf  # linear growth, never settles
    assert theory.fixed_point("relu", 2.0, 0.0, q0=3.0) == pytest.approx(3.0)  # every q is fixed
    assert theory.fixed_point("relu", 1.5, 0.3) == pytest.approx(0.3 / (1 - 0.75), rel=1e-8)
    q = theory.fixed_point("tanh", 1.5, 0.05)
    assert 0 < q < 1.6 and theory.variance_map(q, "tanh", 1.5, 0.05) == pytest.approx(q, rel=1e-9)
    assert theory.fixed_point("tanh", 0.8, 0.0) < 1e-8  # ordered phase: the signal dies out
    assert theory.fixed_point("tanh", 1.0, 0.0) < 1e-2  # edge: q ~ 1/(2l), slow but finite


# nn.init on a (fan_out=1024, fan_in=512) weight and its transpose: empirical var of 524288 entries
# has relative SE <= sqrt(2/524288) = 0.2%, so 2% is ~10 SE.
INIT_FILLS = {
    "xavier_normal": torch.nn.init.xavier_normal_,
    "xavier_uniform": torch.nn.init.xavier_uniform_,
    "kaiming_normal": lambda w: torch.nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"),
    "kaiming_uniform": lambda w: torch.nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu"),
    "orthogonal": torch.nn.init.orthogonal_,
    "normal": lambda w: torch.nn.init.normal_(w, 0.0, 0.3),
}


@pytest.mark.parametrize("shape", [(1024, 512), (512, 1024)])
@pytest.mark.parametrize("init", sorted(INIT_FILLS))
def test_init_sigma2_matches_torch_init_variance(init, shape):
    torch.manual_seed(0)
    w = INIT_FILLS[init](torch.empty(shape, dtype=torch.float64))
    fan_out, fan_in = shape
    sw2, sb2 = theory.init_sigma2(init, fan_in, fan_out, init_std=0.3)
    assert sb2 == 0.0
    assert float((w**2).mean()) * fan_in == pytest.approx(sw2, rel=2e-2)


def test_init_sigma2_matches_nn_linear_default():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(512, 1024) for _ in range(8)]
    sw2, sb2 = theory.init_sigma2("pytorch_default", 512, 1024)
    w = torch.cat([lin.weight.detach().flatten() for lin in layers])
    b = torch.cat([lin.bias.detach() for lin in layers])
    assert float((w**2).mean()) * 512 == pytest.approx(sw2, rel=2e-2)
    # 8192 U(-a, a) biases: relative SE of the variance is sqrt(0.8/8192) = 1%, so 4% is 4 SE
    assert float((b**2).mean()) == pytest.approx(sb2, rel=4e-2)


def test_init_sigma2_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown init"):
        theory.init_sigma2("lecun", 10, 10)


def _signals(weights, biases, act, batch, q_in, seed):
    """One forward/backward pass: (||delta_l|| per layer, ||dL/dW_l|| per layer, mean h_l^2 per layer)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, weights[0].shape[1], generator=g) * math.sqrt(q_in)
    hs = []
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = x @ w.T + b
        h.retain_grad()
        hs.append(h)
        x = act(h) if i < len(weights) - 1 else h  # no activation on the output layer
    x.backward(torch.randn(x.shape, generator=g))  # random output gradient, independent of the net
    delta = np.array([h.grad.norm().item() for h in hs])
    wgrad = np.array([w.grad.norm().item() for w in weights])
    q = np.array([h.detach().pow(2).mean().item() for h in hs])
    return delta, wgrad, q


def _gaussian_net(width, depth, sw2, sb2, seed):
    g = torch.Generator().manual_seed(1000 + seed)
    ws = [
        (torch.randn(width, width, generator=g) * math.sqrt(sw2 / width)).requires_grad_()
        for _ in range(depth)
    ]
    bs = [torch.randn(width, generator=g) * math.sqrt(sb2) for _ in range(depth)]
    return ws, bs


@pytest.mark.parametrize("scale", [0.8, 1.0, 1.25])
def test_wide_relu_net_backward_growth_matches_sqrt_chi(scale):
    width, depth, batch, seeds = 1024, 10, 16, 3
    sw2 = 2.0 * scale
    ratios = []
    for seed in range(seeds):
        delta, _, _ = _signals(*_gaussian_net(width, depth, sw2, 0.0, seed), torch.relu, batch, 1.0, seed)
        ratios.append((delta[0] / delta[-1]) ** (1.0 / (depth - 1)))  # geometric mean of ||d_{l-1}||/||d_l||
    measured = float(np.mean(ratios))
    predicted = math.sqrt(theory.chi("relu", sw2, 0.0, 1.0))
    # Finite width: ||delta||^2 per layer fluctuates by ~sqrt(5/(width*batch)) = 1.7%, so the per-layer
    # geometric mean over 9 steps has SE ~0.3% per seed (measured 0.4%); 1.5% is ~6 SE of the 3-seed mean.
    assert measured == pytest.approx(predicted, rel=1.5e-2)


def test_wide_tanh_net_matches_forward_variances_and_backward_profile():
    width, depth, batch, sw2, sb2 = 1024, 10, 16, 2.5, 0.1  # chaotic side: chi > 1 at the fixed point
    runs = [_signals(*_gaussian_net(width, depth, sw2, sb2, s), torch.tanh, batch, 1.0, s) for s in range(3)]
    q_meas = np.mean([q for _, _, q in runs], axis=0)
    d_meas = np.exp(np.mean([np.log(d / d[-1]) for d, _, _ in runs], axis=0))
    q_pred = theory.forward_variances("tanh", [sw2] * depth, sb2, 1.0)
    d_pred = theory.predicted_backward_norms("tanh", [sw2] * depth, sb2, 1.0, [width] * (depth + 1))
    # per-seed spread measured at ~1.5-2.5% per layer for both; 6% is ~4 SE of the 3-seed mean
    np.testing.assert_allclose(q_meas, q_pred, rtol=6e-2)
    np.testing.assert_allclose(d_meas, d_pred, rtol=6e-2)
    assert d_pred[0] > 1.1  # the test would be vacuous if nothing grew


def test_mixed_width_xavier_tanh_net_matches_mlp_prediction():
    # xavier gives alternating sigma_w^2 = 0.4 and 1.6 here: per-layer sigmas, not one global chi
    widths = [256, 1024, 256, 1024, 256, 1024, 64]
    batch, seeds = 16, 3
    pred = theory.mlp_prediction("tanh", "xavier_normal", widths, 1.0)
    ds, qs = [], []
    for seed in range(seeds):
        torch.manual_seed(100 + seed)  # not the input's seed: equal streams would correlate x with W_1
        ws = [
            torch.nn.init.xavier_normal_(torch.empty(b, a)).requires_grad_()
            for a, b in zip(widths, widths[1:], strict=False)
        ]
        bs = [torch.zeros(b) for b in widths[1:]]
        d, _, q = _signals(ws, bs, torch.tanh, batch, 1.0, seed)
        ds.append(np.log(d / d[-1]))
        qs.append(q)
    # narrow 64-unit output and 256-unit layers fluctuate more than the 1024-wide nets above
    np.testing.assert_allclose(np.exp(np.mean(ds, axis=0)), pred["backward_norm"], rtol=5e-2)
    np.testing.assert_allclose(np.mean(qs, axis=0), pred["q"], rtol=8e-2)


@pytest.mark.parametrize("scale", [0.6, 1.5])
def test_weight_gradient_norms_stay_flat_while_delta_grows(scale):
    width, depth, batch = 1024, 10, 16
    sw2 = 2.0 * scale
    delta, wgrad, _ = _signals(*_gaussian_net(width, depth, sw2, 0.0, 0), torch.relu, batch, 1.0, 0)
    predicted = theory.predicted_backward_norms("relu", [sw2] * depth, 0.0, 1.0)
    # ||delta|| moves by scale^4.5 (x0.1 or x6.2) across the net ...
    assert delta[0] / delta[-1] == pytest.approx(predicted[0], rel=0.1)
    assert abs(math.log(delta[0] / delta[-1])) > math.log(5.0)
    # ... while ||dL/dW_l|| ~ ||delta_l|| ||x_{l-1}|| stays within ~15% of flat (measured spread ~12%)
    assert wgrad.max() / wgrad.min() < 1.3


def test_mlp_prediction_for_he_relu_is_flat():
    pred = theory.mlp_prediction("relu", "kaiming_normal", [784, 256, 256, 256, 10], 1.0)
    json.dumps(pred)  # plain lists and floats, ready for the UI
    assert len(pred["q"]) == 4 and len(pred["chi"]) == 3 and len(pred["backward_norm"]) == 4
    np.testing.assert_allclose(pred["chi"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(pred["backward_norm"], 1.0, rtol=1e-12)
    assert pred["chi_fixed_point"] == pytest.approx(1.0, rel=1e-12)
    assert "edge of chaos" in pred["reading"]


def test_mlp_prediction_explains_explosion_and_vanishing():
    boom = theory.mlp_prediction("relu", "normal", [784, 512, 256, 128, 10], 1.0, init_std=1.0)
    # sigma_w^2 = fan_in of the weights after each hidden layer, chi = half of it
    np.testing.assert_allclose(boom["chi"], [256.0, 128.0, 64.0], rtol=1e-12)
    assert boom["backward_norm"][0] == pytest.approx(math.sqrt(256 * 128 * 64), rel=1e-12)
    assert boom["chi_fixed_point"] is None
    assert "explodes" in boom["reading"] and "forward signal blows up" in boom["reading"]
    fade = theory.mlp_prediction("relu", "pytorch_default", [784, 256, 256, 256, 10], 1.0)
    np.testing.assert_allclose(fade["chi"], 1.0 / 6.0, rtol=1e-12)  # sigma_w^2 = 1/3, E[relu'^2] = 1/2
    assert "vanish" in fade["reading"]


def test_spectral_stats_match_numpy_and_torch():
    w = np.random.default_rng(1).standard_normal((64, 64)) / 8.0
    radius, sigma = theory.spectral_stats(w)
    assert radius == pytest.approx(float(torch.linalg.eigvals(torch.tensor(w)).abs().max()), rel=1e-10)
    assert sigma == pytest.approx(float(torch.linalg.matrix_norm(torch.tensor(w), ord=2)), rel=1e-10)
    assert radius <= sigma
    # non-normal: a stable-looking radius of 0.5 hides transient gain > 10
    radius, sigma = theory.spectral_stats(np.array([[0.5, 10.0], [0.0, 0.5]]))
    assert radius == pytest.approx(0.5) and sigma > 10
    with pytest.raises(ValueError):
        theory.spectral_stats(np.ones((2, 3)))


def test_pascanu_condition():
    gamma, text = theory.pascanu_condition("tanh")
    assert gamma == pytest.approx(1.0) and "1/gamma = 1;" in text
    gamma, text = theory.pascanu_condition("sigmoid")
    assert gamma == pytest.approx(0.25) and "1/gamma = 4;" in text
    assert theory.pascanu_condition("relu")[0] == pytest.approx(1.0)
    assert theory.pascanu_condition("selu")[0] == pytest.approx(R.SELU_SCALE * R.SELU_ALPHA)
    x = math.sqrt(2.0)  # gelu' peaks where its derivative x*(2 - x^2)*pdf(x) vanishes
    peak = 0.5 * (1 + math.erf(x / math.sqrt(2))) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    assert theory.pascanu_condition("gelu")[0] == pytest.approx(peak, rel=1e-9)
