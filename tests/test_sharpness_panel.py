"""The sharpness chart and its reading in the theory panel, from runs recorded through the engine."""

from __future__ import annotations

import numpy as np
import pytest

from components import live_figures as LF
from components import theory_panel as TP
from training import explain
from training.config import from_preset
from training.run import Run


def recorded(cfg, steps: int) -> Run:
    run = Run(cfg, "cpu")
    for _ in range(steps):
        rec = run.trainer.step()
        run.record(rec)
        if not rec.applied:
            break
    return run


@pytest.fixture(scope="module")
def too_large():
    """'a step too large': sharpness ~31 at step 0 against 2/lr = 10; the run explodes at step ~46."""
    return recorded(from_preset("a step too large"), 300).snapshot()


def test_the_chart_draws_each_probe_and_the_edge_two_over_lr_at_every_step(too_large):
    fig = LF.figure("chart_sharpness", [too_large])
    sharp = next(t for t in fig.data if t.name.startswith("sharpness"))
    edge = next(t for t in fig.data if t.name.startswith("edge of stability"))
    steps, values = too_large.series("sharpness")
    probed = np.isfinite(values) & (values > 0)
    np.testing.assert_array_equal(sharp.x, steps[probed])
    np.testing.assert_allclose(sharp.y, values[probed])
    assert list(sharp.x[:3]) == [0, 5, 10]
    assert edge.name == "edge of stability 2/lr" and np.allclose(edge.y, 2 / 0.2)
    # the step the loss starts climbing is marked, and the sharpness was past the edge by then
    (line,), (note,) = fig.layout.shapes, fig.layout.annotations
    assert note.text == "loss starts climbing" and line.x0 <= 5 and sharp.y[0] > 2 * edge.y[0]


def test_the_panel_says_the_curvature_passed_two_over_lr_for_the_run_that_exploded(too_large):
    words = TP.sharpness_words(too_large)
    assert words.startswith("The top curvature of the loss passed 2/lr (")
    assert "each step overshoots along that direction and the overshoot grows" in words


def test_the_reading_of_a_run_below_the_edge_and_at_it():
    assert "is below 2/lr = 40" in explain.sharpness_reading(30.0, 40.0)
    assert explain.sharpness_reading(19.7, 20.0).startswith("At the edge of stability")
    assert "not finite" in explain.sharpness_reading(float("nan"), 20.0)


def test_a_live_lr_change_moves_the_edge_line():
    run = Run(from_preset("a step too large").replace(lr=0.05, steps=20), "cpu")
    for i in range(20):
        if i == 10:
            run.trainer.set_lr(0.1)
        run.record(run.trainer.step())
    edge = next(t for t in LF.figure("chart_sharpness", [run.snapshot()]).data if t.name.startswith("edge"))
    assert list(edge.y[:10]) == [40.0] * 10 and list(edge.y[10:]) == [20.0] * 10


def test_adam_draws_its_preconditioned_sharpness_against_38_over_lr():
    cfg = from_preset("a step too large").replace(optimizer="adam", lr=1e-3, steps=12)
    snap = recorded(cfg, 12).snapshot()
    fig = TP.sharpness(snap)
    assert fig.data[0].name.startswith("preconditioned sharpness") and len(fig.data[0].x) == 2  # steps 5, 10
    assert fig.data[1].name == "edge of stability 38/lr" and np.allclose(fig.data[1].y, 38 / 1e-3)
