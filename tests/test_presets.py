"""Each preset shows what its name says."""

import numpy as np
import pytest

from training.config import from_preset
from training.engine import Trainer


def _train(name: str, steps: int, **changes):
    t = Trainer(from_preset(name, probe_every=10_000, **changes), "cpu")
    recs = []
    for _ in range(steps):
        recs.append(t.step())
        if not recs[-1].applied:
            break
    return t, recs


def _mean_loss(recs, sl):
    return float(np.mean([r.loss for r in recs[sl]]))


@pytest.mark.parametrize("name", ["watch it explode", "RNN on long sequences explodes"])
def test_exploding_presets_go_non_finite_within_100_steps(name):
    _, recs = _train(name, 100)
    assert not recs[-1].applied and recs[-1].events[-1]["kind"] == "explosion"
    assert len(recs) <= 100


def test_rnn_preset_explodes_back_through_time():
    # The Pascanu et al. picture: the backward signal grows step by step going back in time.
    t = Trainer(from_preset("RNN on long sequences explodes", probe_every=1), "cpu")
    back = t.step().probe["time_backward_norm"]
    assert back[0] > 1e4 * back[-1]
    assert np.all(np.diff(np.log(back[:40])) < 0)  # monotone growth toward early steps over most of the sequence


def test_clip_it_caps_every_step_and_survives():
    _, recs = _train("clip it", 200)
    assert all(r.applied for r in recs) and len(recs) == 200
    assert all(r.grad_norm_post_clip <= 1.0 * (1 + 1e-6) for r in recs)
    assert sum(r.clipped for r in recs) > 150  # the bad init keeps the raw norm far above the threshold
    assert _mean_loss(recs, slice(-20, None)) < 0.5 * _mean_loss(recs, slice(0, 5))


@pytest.mark.parametrize("name", ["fix the init", "leaky fix"])
def test_good_init_learns_without_clipping(name):
    t, recs = _train(name, 200)
    assert all(r.applied for r in recs)
    assert max(r.grad_norm_pre_clip for r in recs) < 100  # vs ~4e4 at step 0 of "watch it explode"
    assert _mean_loss(recs, slice(-20, None)) < 0.3 * _mean_loss(recs, slice(0, 5))
    assert t.evaluate()[1] > 0.85  # held-out digits


def test_leaky_fix_has_no_dead_units():
    t = Trainer(from_preset("leaky fix", probe_every=1), "cpu")
    assert np.all(t.step().probe["act_stuck"] == 0)
    relu = Trainer(from_preset("fix the init", probe_every=1), "cpu")
    assert np.all(relu.step().probe["act_stuck"] > 0.2)  # about half of ReLU units pass no gradient


def test_deep_tanh_vanishes():
    t = Trainer(from_preset("deep tanh vanishes", probe_every=1), "cpu")
    back = t.step().probe["backward_norm"]
    assert back[0] < 1e-6 * back[-1]  # the first layer gets a vanishing share of the signal
    _, recs = _train("deep tanh vanishes", 100)
    assert all(r.applied for r in recs)
    assert _mean_loss(recs, slice(-20, None)) > 0.9 * _mean_loss(recs, slice(0, 5))  # it does not learn


def test_lstm_with_clipping_survives_where_the_rnn_explodes():
    _, recs = _train("LSTM with clipping survives", 550)  # it plateaus at the mean for ~400 steps, then learns
    assert all(r.applied for r in recs) and len(recs) == 550
    assert all(r.grad_norm_post_clip <= 1.0 * (1 + 1e-6) for r in recs)
    # Predicting the mean sum scores MSE 1/6 on the adding problem; learning means beating it clearly.
    assert _mean_loss(recs, slice(-30, None)) < 0.5 / 6
