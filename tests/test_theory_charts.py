import numpy as np
import pytest

from components.theory import backward_signal_figure, hidden_weight_grad_norms, spectral_figure
from training.config import from_preset
from training.engine import Trainer
from training.explain import mlp_theory


def _trace(fig, prefix):
    return next(t for t in fig.data if t.name.startswith(prefix))


def test_backward_signal_figure_draws_prediction_and_measurements_relative_to_last_layer():
    cfg = from_preset("watch it explode", probe_every=1)
    t = Trainer(cfg, "cpu")
    rec = t.step()
    pred = mlp_theory(cfg)["hidden_backward_profile"]
    wg = hidden_weight_grad_norms(t.names, rec.grad_norms)
    fig = backward_signal_figure(pred, rec.probe, rec.probe, wg)
    np.testing.assert_allclose(_trace(fig, "predicted").y, pred)
    measured = np.asarray(_trace(fig, "measured, latest").y)
    b = rec.probe["backward_norm"]
    np.testing.assert_allclose(measured, b / b[-1])
    assert measured[-1] == 1.0 and measured[0] > 10  # grows toward the input, as the prediction says
    # The weight-gradient norms are the blocks' fc.weight norms, taken from the recorded step.
    idx = [t.names.index(f"blocks.{i}.fc.weight") for i in range(3)]
    np.testing.assert_allclose(wg, rec.grad_norms[idx])
    np.testing.assert_allclose(_trace(fig, "‖∂L/∂W‖").y, wg / wg[-1])


def test_backward_signal_figure_without_theory_still_shows_measurements():
    fig = backward_signal_figure(None, {"step": 0, "backward_norm": np.array([4.0, 2.0, 1.0])}, None)
    assert [t.name for t in fig.data] == ["measured, first probe (step 0)"]
    assert list(fig.data[0].y) == [4.0, 2.0, 1.0]


def test_spectral_figure_draws_the_pascanu_bound_and_skips_non_finite_norms():
    probes = [{"step": 0, "spectral_radius": 3.0, "max_singular_value": 4.5},
              {"step": 10, "spectral_radius": 3.1, "max_singular_value": 4.7}]
    fig = spectral_figure(probes, np.array([0, 10, 11]), np.array([1.0, 50.0, np.inf]), bound=1.0)
    bound = _trace(fig, "σ₁ = 1/γ")
    assert list(bound.y) == [1.0, 1.0]
    assert list(_trace(fig, "spectral radius").y) == [3.0, 3.1]
    assert list(_trace(fig, "grad norm").y) == pytest.approx([1.0, 50.0])
    marker = _trace(fig, "✕ non-finite")
    assert list(marker.x) == [11] and marker.y[0] > 50.0
