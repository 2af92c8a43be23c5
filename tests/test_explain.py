"""The theory overlay: the engine's measured backward signal against the mean-field prediction."""

import numpy as np
import pytest

from components.data import suggestion
from components.theory import _relative as measured_profile  # a probe's backward norms relative to the last layer
from training import explain
from training.config import Config, from_preset
from training.engine import Trainer
from training.explain import mlp_theory, not_applicable


@pytest.mark.parametrize("factor", [0.8, 1.0, 1.25])
def test_wide_relu_mlp_backward_signal_matches_the_prediction(factor):
    # sigma_w^2 = factor * 2 on the 512-wide hidden layers (He init times factor).
    cfg = Config(dataset="gaussian", hidden_sizes=(512,) * 8, init="normal", init_std=float(np.sqrt(2 * factor / 512)),
                 probe_every=1, batch_size=256, seed=0)
    measured = measured_profile(Trainer(cfg, "cpu").step().probe["backward_norm"])
    predicted = np.asarray(mlp_theory(cfg)["hidden_backward_profile"])
    # Per-layer growth over 7 layers. Finite width (512) and batch (256) make ||delta||^2 fluctuate by
    # O(1/sqrt(width)) ~ 4% per layer, ~1% on the 7-layer geometric mean: 3% leaves room (seen: <= 0.8%).
    growth_m, growth_p = (measured[0]) ** (1 / 7), (predicted[0]) ** (1 / 7)
    assert growth_m == pytest.approx(growth_p, rel=0.03)
    np.testing.assert_allclose(measured, predicted, rtol=0.10)  # whole profile, layer by layer (seen: <= 5%)


def test_the_explode_preset_is_predicted_to_explode_and_he_init_to_hold():
    bad, good = (mlp_theory(from_preset("watch it explode")),
                 mlp_theory(from_preset("watch it explode", init="kaiming_normal")))
    assert min(bad["chi"]) > 10 and "explodes" in bad["reading"]
    assert good["chi"][1] == pytest.approx(1.0, abs=1e-9)  # He init: chi = 1 on hidden-to-hidden layers
    measured = measured_profile(Trainer(from_preset("watch it explode", probe_every=1), "cpu").step().probe[
        "backward_norm"])
    assert measured[0] > 10 * measured[-1]  # the measured signal grows toward the input as predicted


def test_deep_tanh_is_predicted_to_vanish():
    pred = mlp_theory(from_preset("deep tanh vanishes"))
    assert pred["hidden_backward_profile"][0] < 1e-6 and max(pred["chi"]) < 1


def test_where_the_prediction_does_not_apply_it_says_why():
    assert mlp_theory(Config(norm="batch")) is None and "normalization" in not_applicable(Config(norm="batch"))
    assert "recurrent" in not_applicable(Config(model="lstm", dataset="adding"))
    assert not_applicable(Config()) is None


def test_suggestions_fit_the_cause():
    # The banner's one line (components.data.suggestion): the cure for the config's likely cause comes first or second.
    assert "He init" in suggestion(from_preset("watch it explode"))
    assert "Xavier init" in suggestion(from_preset("watch it explode", activation="tanh"))
    assert "clip" in suggestion(from_preset("RNN on long sequences explodes"))
    assert "spectral radius" in suggestion(from_preset("RNN on long sequences explodes"))
    assert suggestion(Config(clip="norm", init="kaiming_normal")).startswith("lower the learning rate")


def test_critical_init_std_is_he_for_relu_and_one_over_root_fan_in_for_identity():
    # χ(q*) = 1: σ_w² = 2 for ReLU (He), σ_w² = 1 for a linear net; init_std = sqrt(σ_w² / fan_in).
    assert explain.critical_init_std("relu", 128) == pytest.approx(np.sqrt(2 / 128), rel=1e-6)
    assert explain.critical_init_std("identity", 200) == pytest.approx(np.sqrt(1 / 200), rel=1e-6)
    assert explain.critical_init_std("sigmoid", 128) is not None  # σ_w² ≈ 100 is still inside init_std's range
