"""The chart builders (components/charts.py) on plain data: RunSnapshots built from plain columns, as the runner
hands them over."""

from __future__ import annotations

import numpy as np
import pytest

from components import charts as C
from components import panels
from components import theme as T
from training import lessons as LS
from training.config import Config
from training.runner import RunSnapshot

NAMES = ["blocks.0.fc.weight", "blocks.0.fc.bias", "head.weight", "head.bias"]


def make_snapshot(rows: dict[str, list[float]], config: Config | None = None, events=(), probes=(), steps=None,
                  label="run", lo=None, hi=None) -> RunSnapshot:
    """A RunSnapshot from plain columns (anything not given is 1.0), as the runner would hand to the charts."""
    columns = ["loss", "lr", "grad_norm_pre_clip", "grad_norm_post_clip", "clipped",
               *[f"{kind}/{n}" for kind in ("grad_norm", "weight_norm", "update_ratio") for n in NAMES]]
    n = len(next(iter(rows.values())))
    value = np.ones((n, len(columns)))
    for name, col in rows.items():
        value[:, columns.index(name)] = col
    step = np.arange(n) if steps is None else np.asarray(steps)
    view = {"step": step, "value": value, "lo": value if lo is None else lo, "hi": value if hi is None else hi}
    return RunSnapshot("r1-1", label, config or Config(), "running", None, int(step[-1]) + 1, 100.0, "cpu", NAMES,
                       columns, view, list(events), list(probes), None, "dead")


def trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_grad_norm_figure_marks_non_finite_at_the_top_and_keeps_the_finite_line():
    snap = make_snapshot({"grad_norm_pre_clip": [1.0, 10.0, 1e4, np.inf],
                          "grad_norm_post_clip": [1.0, 10.0, 1e4, np.nan]})
    fig = C.grad_norm_figure([snap])
    bad = trace(fig, C.NON_FINITE_NAME)
    assert list(bad.x) == [3, 3]  # pre and post at the explosion step, neither dropped
    assert min(bad.y) > 1e4  # above every finite value
    pre = trace(fig, "pre-clip")
    assert list(pre.y[:3]) == [1.0, 10.0, 1e4] and np.isnan(pre.y[3])
    assert fig.layout.yaxis.type == "log"


def test_grad_norm_threshold_line_sits_at_the_threshold_and_follows_live_changes():
    cfg = Config(clip="norm", clip_threshold=2.0)
    snap = make_snapshot({"grad_norm_pre_clip": [5.0, 6.0, 7.0], "grad_norm_post_clip": [2.0, 2.0, 2.0]}, cfg)
    assert list(trace(C.grad_norm_figure([snap]), "clip threshold 2").y) == [2.0, 2.0]
    change = {"step": 2, "kind": "config_change", "field": "clip", "new": ["norm", 0.5, "2"], "message": "clip"}
    snap = make_snapshot({"grad_norm_pre_clip": [5.0, 6.0, 7.0]}, cfg, events=[change])
    fig = C.grad_norm_figure([snap])
    assert list(trace(fig, "clip threshold 0.5").y) == [0.5, 0.5]
    assert any(s.x0 == 2 for s in fig.layout.shapes), "the live change is a vertical marker"
    no_clip = make_snapshot({"grad_norm_pre_clip": [5.0, 6.0]})
    assert not [t for t in C.grad_norm_figure([no_clip]).data if "threshold" in (t.name or "")]


def test_overlaid_runs_keep_one_colour_each():
    a = make_snapshot({"grad_norm_pre_clip": [1.0, 2.0]}, label="A")
    b = make_snapshot({"grad_norm_pre_clip": [1.0, 3.0]}, Config(clip="norm"), label="B")
    fig = C.grad_norm_figure([a, b])
    assert trace(fig, "A pre-clip").line.color == trace(fig, "A post-clip").line.color == T.run_color(0)
    assert trace(fig, "B pre-clip").line.color == trace(fig, "B clip threshold 1").line.color == T.run_color(1)
    assert trace(C.loss_figure([a, b]), "B loss").line.color == T.run_color(1)


def test_loss_figure_marks_explosion_and_non_finite_loss_and_draws_accuracy():
    event = {"step": 2, "kind": "explosion", "param": "head.weight", "message": "boom"}
    probe = {"step": 0, "test_accuracy": 0.5}
    snap = make_snapshot({"loss": [2.3, 1e9, np.nan]}, events=[event], probes=[probe])
    fig = C.loss_figure([snap])
    assert list(trace(fig, C.NON_FINITE_NAME).x) == [2]
    assert [s.x0 for s in fig.layout.shapes] == [2]
    assert any("exploded" in a.text for a in fig.layout.annotations)
    assert list(trace(fig, "test accuracy").y) == [0.5]


def test_probes_between_evaluations_draw_no_accuracy_and_the_status_shows_the_last_evaluated():
    probes = [{"step": 0, "test_accuracy": 0.5}, {"step": 10, "test_accuracy": None},
              {"step": 50, "test_accuracy": 0.75}, {"step": 60, "test_accuracy": None}]
    snap = make_snapshot({"loss": [2.3, 2.0, 1.5]}, probes=probes)
    acc = trace(C.loss_figure([snap]), "test accuracy")
    assert list(acc.x) == [0, 50] and list(acc.y) == [0.5, 0.75]
    assert panels.latest_test_accuracy(snap) == 0.75
    assert panels.latest_test_accuracy(make_snapshot({"loss": [1.0]}, probes=probes[1:2])) is None


def test_decimated_buckets_draw_their_min_max_envelope():
    pre = [1.0, 1.0, 1.0, 1.0]
    hi = np.ones((4, 17))
    hi[0, 2] = 500.0  # a spike folded into the first bucket
    snap = make_snapshot({"grad_norm_pre_clip": pre}, steps=[9, 19, 20, 21], hi=hi)
    fig = C.grad_norm_figure([snap])
    assert max(np.nanmax(np.asarray(t.y, dtype=float)) for t in fig.data if t.fill == "tonexty") == 500.0


def test_heatmap_folds_columns_but_keeps_the_spike_and_marks_non_finite():
    n = 1000
    g = np.ones(n)
    g[500] = 1e6
    g[-1] = np.inf
    snap = make_snapshot({"grad_norm/head.weight": g})
    fig = C.layer_heatmap(snap, max_cols=100)
    heat = fig.data[0]
    assert len(heat.x) == 100 and list(heat.y) == ["blocks.0", "head"]  # weight matrices only, input first
    assert np.nanmax(np.asarray(heat.z, dtype=float)) == pytest.approx(6.0)
    bad = trace(fig, C.NON_FINITE_NAME)
    assert list(bad.y) == ["head"] and bad.x[0] == n - 1


def test_gradient_flow_shows_non_finite_bars_and_zero_markers():
    fig = C.gradient_flow_figure(NAMES, {"run": np.array([0.0, 1.0, np.inf, 1.0])}, step=7)
    bars = fig.data[0]
    assert list(bars.x) == ["blocks.0", "head"]
    assert bars.marker.color[1] == T.NON_FINITE and "✕" in bars.text[1]
    assert list(trace(fig, C.ZERO_NAME).x) == ["blocks.0"]
    assert "step 7" in fig.layout.title.text


def test_weights_figure_has_the_healthy_update_ratio_reference():
    snap = make_snapshot({"update_ratio/head.weight": [1e-3, 1e-2, np.nan]})
    fig = C.weights_updates_figure(snap)
    assert list(trace(fig, "healthy ≈ 1e-3").y) == [1e-3, 1e-3]
    assert list(trace(fig, C.NON_FINITE_NAME).x) == [2]


def test_probe_figure_per_layer_for_mlp_and_per_time_step_for_recurrent():
    mlp = {"step": 10, "layers": ["blocks.0", "blocks.1"], "act_std": np.array([1.0, 0.0]),
           "act_stuck": np.array([0.5, 1.0]), "stuck_label": "dead"}
    fig = C.probe_figure(mlp)
    assert list(trace(fig, "dead fraction").y) == [0.5, 1.0]
    assert list(trace(fig, C.ZERO_NAME).x) == ["blocks.1"]  # a std of 0 on the log axis is shown, not lost
    rnn = {"step": 10, "time_backward_norm": np.array([1e3, 1e2, 1e1, 1.0]), "time_act_std": np.ones(4),
           "time_stuck": np.zeros(4), "spectral_radius": 3.0}
    fig = C.probe_figure(rnn)
    assert list(trace(fig, "‖∂L/∂h_t‖").y) == [1e3, 1e2, 1e1, 1.0]
    assert "ρ(W_hh) = 3" in fig.layout.title.text


def test_the_recurrent_chart_draws_the_first_probes_backward_signal_beside_the_latest():
    from components import charts as C
    from training.engine import Trainer

    t = Trainer(LS.fix("RNN on long sequences explodes").replace(probe_every=5), "cpu")
    probes = [p for p in (t.step().probe for _ in range(6)) if p is not None]
    first, latest = probes[0], probes[-1]
    assert (first["step"], latest["step"]) == (0, 5)
    traces = {tr.name: tr for tr in C.probe_figure(latest, first).data}
    assert list(traces["‖∂L/∂h_t‖ at step 0"].y) == pytest.approx(list(first["time_backward_norm"]))
    assert list(traces["‖∂L/∂h_t‖"].y) == pytest.approx(list(latest["time_backward_norm"]))
    # One probe only (a run that exploded before its second): one line, nothing to set beside it.
    assert "‖∂L/∂h_t‖ at step 0" not in {tr.name for tr in C.probe_figure(first, first).data}
