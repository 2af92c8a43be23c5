"""One function per chart: plain data in (RunSnapshots, numpy arrays, probe dicts), a Plotly figure out.

Time charts draw ``snapshot.view`` (already decimated to a few thousand rows), so a long run costs the same
to draw as a short one. The figures are plain dicts built from ``components/chart_parts.py`` (which says why,
and how values a log axis cannot draw are shown) and turned into a Plotly object once each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from training.run import RunSnapshot, Snapshot

from . import chart_parts as P
from . import theme as T
from .chart_parts import NON_FINITE_NAME, ZERO_NAME
from .data import accuracy_label, short_name, weight_params

__all__ = ["NON_FINITE_NAME", "ZERO_NAME", "activation_figure", "grad_norm_figure", "gradient_flow_figure",
           "layer_heatmap", "loss_figure", "probe_figure", "time_figure", "weights_updates_figure"]

HEATMAP_MAX_COLS = 200  # columns drawn; each keeps the max of the steps it covers
HEATMAP_RANGE = (-3.0, 3.0)  # log10 ‖g‖ the colour scale covers at least: ~1 is mid-scale, 1e3+ is bright


def loss_figure(snaps: Sequence[Snapshot], colors: Sequence[str] | None = None) -> go.Figure:
    """Training loss (log y) and test accuracy from the probes (right axis, 0–1), for one or more runs.

    Requires: each snapshot's ``view`` with a ``loss`` column, ``probes`` (``step``, ``test_accuracy``), ``events``.
    """
    multi, colors = len(snaps) > 1, P.run_colors(len(snaps), colors)
    data, marks = [], P.Marks()
    for snap, color in zip(snaps, colors, strict=True):
        c = color if multi else T.LOSS
        x, y = marks.line(*snap.series("loss"), label=f"{snap.label} loss" if multi else "loss")
        data += P.band(snap, "loss", c, marks, **P.LEFT)
        data.append(P.scatter(x, y, mode="lines", name=f"{snap.label} loss" if multi else "loss",
                              line={"color": c, "width": 1.6}, **P.LEFT))
        evals = [p for p in snap.probes if p.get("test_accuracy") is not None]  # probes between evaluations: None
        if evals:
            px = [p["step"] for p in evals]
            py = [p["test_accuracy"] for p in evals]
            data.append(P.scatter(px, py, mode="lines+markers", marker={"size": 4},
                                  name=f"{snap.label} test acc." if multi else "test accuracy",
                                  line={"color": color if multi else T.ACCURACY, "width": 1.2, "dash": "dot"},
                                  **P.RIGHT))
    data += marks.traces(**P.LEFT)
    acc_title = accuracy_label(snaps[0].config).lower() if snaps else "test accuracy"  # adding: within 0.04
    layout = P.right_axis_layout("Loss and test accuracy", P.yaxis("loss", type="log"),
                                 P.yaxis(acc_title, **T.PERCENT_AXIS))
    data += P.event_lines(layout, snaps, multi)
    return P.figure(data, layout)


def grad_norm_figure(snaps: Sequence[Snapshot], colors: Sequence[str] | None = None) -> go.Figure:
    """Global gradient norm before and after clipping (log y), with each run's norm-clip threshold as a line.

    Requires: ``grad_norm_pre_clip`` / ``grad_norm_post_clip`` columns and ``clip`` (the clipping now).
    One run: pre-clip red, post-clip blue. Several: one colour per run, pre-clip solid, post-clip dotted.
    """
    multi, colors = len(snaps) > 1, P.run_colors(len(snaps), colors)
    data, marks = [], P.Marks()
    x_end = max((int(s.view["step"][-1]) for s in snaps if len(s.view["step"])), default=1)
    for snap, color in zip(snaps, colors, strict=True):
        pre_c, post_c = (color, color) if multi else (T.PRE_CLIP, T.POST_CLIP)
        prefix = f"{snap.label} " if multi else ""
        data += P.band(snap, "grad_norm_pre_clip", pre_c, marks)
        # Post-clip dashed on top of pre-clip: without clipping they coincide and both stay visible.
        for col, c, dash, width, name in (("grad_norm_pre_clip", pre_c, "solid", 2.5, "pre-clip"),
                                          ("grad_norm_post_clip", post_c, "dot" if multi else "dash", 1.8,
                                           "post-clip")):
            x, y = marks.line(*snap.series(col), label=prefix + name)
            data.append(P.scatter(x, y, mode="lines", name=prefix + name,
                                  line={"color": c, "width": width, "dash": dash}))
        mode, threshold, _ = snap.clip
        if mode == "norm":
            data.append(P.scatter([0, x_end], [threshold, threshold], mode="lines",
                                  name=f"{prefix}clip threshold {threshold:g}",
                                  line={"color": color if multi else T.THRESHOLD, "width": 1.2, "dash": "longdashdot"},
                                  hoverinfo="name"))
    data += marks.traces()
    layout = {**T.base_layout("Gradient norm: before and after clipping"),
              "xaxis": P.xaxis(), "yaxis": P.yaxis("‖g‖ (global L2)", type="log")}
    data += P.event_lines(layout, snaps, multi)
    return P.figure(data, layout)


def layer_heatmap(snap: RunSnapshot, max_cols: int = HEATMAP_MAX_COLS) -> go.Figure:
    """Per-layer gradient norm over time: weight matrices (input at the bottom) × steps, colour = log10 ‖g‖.

    Requires: ``view["hi"]`` (bucket maxima, so spikes survive) with ``grad_norm/<param>`` columns, ``names``.
    Steps are folded into at most ``max_cols`` columns, each keeping the max of its steps.
    """
    params = weight_params(snap.names)
    steps = np.asarray(snap.view["step"])
    g = snap.view["hi"][:, [snap.columns.index(f"grad_norm/{p}") for p in params]].T  # (layers, n)
    bad = ~np.isfinite(g)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log10(np.where(bad | (g <= 0), np.nan, g))
    if np.isfinite(z).any():  # an exactly-zero gradient is drawn a decade under the smallest one, not left blank
        z = np.where(g == 0, np.nanmin(z) - 1.0, z)
    max_cols = min(max_cols, P.line_points())
    if steps.size > max_cols:
        starts = np.unique(np.linspace(0, steps.size, max_cols, endpoint=False).astype(int))
        z = np.fmax.reduceat(z, starts, axis=1)  # fmax: a NaN (gap) never hides a finite value
        bad = np.logical_or.reduceat(bad, starts, axis=1)
        steps = steps[np.r_[starts[1:], steps.size] - 1]  # each column is drawn at its last step
    labels = [short_name(p) for p in params]
    finite = z[np.isfinite(z)]  # one colour scale for every run, widened to fit: bright always means large
    zmin = min(HEATMAP_RANGE[0], float(finite.min())) if finite.size else HEATMAP_RANGE[0]
    zmax = max(HEATMAP_RANGE[1], float(finite.max())) if finite.size else HEATMAP_RANGE[1]
    data = [{"type": "heatmap", "x": steps, "y": labels, "z": z, "zmin": zmin, "zmax": zmax,
             "colorscale": T.HEATMAP_SCALE, "name": "log10 ‖g‖",
             "colorbar": {"title": {"text": "log10 ‖g‖", "side": "right"}, "thickness": 12},
             "hovertemplate": "step %{x}<br>%{y}<br>log10 ‖g‖ = %{z:.2f}<extra></extra>"}]
    rows, cols = np.nonzero(bad)
    if rows.size:
        data.append(P.scatter(steps[cols], [labels[r] for r in rows], mode="markers", name=NON_FINITE_NAME,
                              marker={"symbol": "x-thin-open", "size": 9, "line": {"width": 2}, "color": "#22D3EE"},
                              hoverinfo="x+y+name"))
    layout = {**T.base_layout("Gradient norm per layer over time"), "hovermode": "closest",
              "xaxis": P.xaxis(), "yaxis": P.yaxis()}
    data += P.event_lines(layout, [snap], False)
    return P.figure(data, layout)


def gradient_flow_figure(names: list[str], grad_norms: dict[str, np.ndarray], step: int | None = None,
                         colors: Sequence[str] | None = None) -> go.Figure:
    """Gradient norm of each weight matrix at one step, input → output (log y).

    ``grad_norms`` maps a run label to its per-parameter norms (``StepRecord.grad_norms``, ``names`` order).
    One run: bars coloured by layer. Several: grouped bars, one colour per run. Non-finite bars are drawn
    full height in red and labelled ✕.
    """
    params = weight_params(names)
    idx = [names.index(p) for p in params]
    labels = [short_name(p) for p in params]
    multi, colors = len(grad_norms) > 1, P.run_colors(len(grad_norms), colors)
    title = "Gradient flow now, input → output" + (f" (step {step})" if step is not None else "")
    data, marks = [], P.Marks()
    cleaned = {run: marks.line(labels, np.asarray(v, dtype=float)[idx])[1] for run, v in grad_norms.items()}
    _, top = marks.extent()
    for (run, y), color in zip(cleaned.items(), colors, strict=True):
        raw = np.asarray(grad_norms[run], dtype=float)[idx]
        bad = ~np.isfinite(raw)
        bar_colors = [T.NON_FINITE if b else (color if multi else c)
                      for b, c in zip(bad, T.layer_colors(len(labels)), strict=True)]
        data.append({"type": "bar", "x": labels, "y": np.where(bad, top, y), "name": run,
                     "marker": {"color": bar_colors},
                     "text": ["✕ " + str(v) if b else "" for b, v in zip(bad, raw, strict=True)],
                     "textposition": "inside", "hovertemplate": "%{x}: %{customdata}<extra>" + run + "</extra>",
                     "customdata": [f"{v:.3g}" for v in raw], "showlegend": multi})
    marks.bad_x = []  # drawn as red bars above; zeros get "○ zero" markers at the bottom
    data += marks.traces()
    if any(not np.isfinite(np.asarray(v, dtype=float)[idx]).all() for v in grad_norms.values()):
        data.append(P.scatter([None], [None], mode="markers", name=NON_FINITE_NAME,
                              marker={"symbol": "square", "color": T.NON_FINITE, "size": 10}))
    layout = {**T.base_layout(title), "barmode": "group", "hovermode": "closest", "xaxis": P.xaxis(),
              "yaxis": P.yaxis("‖g‖ per weight matrix", type="log", range=P.log_range(*marks.extent()))}
    return P.figure(data, layout)


def weights_updates_figure(snap: RunSnapshot) -> go.Figure:
    """Weight norm per layer (top) and update ratio ‖Δw‖/‖w‖ per layer (bottom, log, ~1e-3 healthy).

    Requires: ``weight_norm/<param>`` and ``update_ratio/<param>`` columns of the view, ``names``, ``events``.
    """
    params = weight_params(snap.names)
    show_legend = len(params) <= 8
    x_end = int(snap.view["step"][-1]) if len(snap.view["step"]) else 1
    data = []
    for where, kind, log in ((P.TOP, "weight_norm", True), (P.BOTTOM, "update_ratio", True)):
        marks = P.Marks()
        for p, color in zip(params, T.layer_colors(len(params)), strict=True):
            x, y = marks.line(*snap.series(f"{kind}/{p}"), log=log, label=short_name(p))
            data.append(P.scatter(x, y, mode="lines", name=short_name(p), legendgroup=p,
                                  showlegend=show_legend and where is P.TOP, line={"color": color, "width": 1.3},
                                  **where))
        if where is P.BOTTOM:
            data.append(P.scatter([0, x_end], [1e-3, 1e-3], mode="lines", name="healthy ≈ 1e-3",
                                  line={"color": T.REFERENCE, "dash": "dash", "width": 1.2}, hoverinfo="name",
                                  **where))
        data += marks.traces(log=log, **where)
    layout = P.two_rows_layout("Weight norms and update ratios", P.yaxis("‖w‖", type="log"),
                               P.yaxis("‖Δw‖/‖w‖", type="log"))
    data += P.event_lines(layout, [snap], False)
    return P.figure(data, layout)


def activation_figure(probe: dict) -> go.Figure:
    """MLP activations at one probe: std per layer (bars) and the dead/saturated fraction (line, right axis).

    Requires: ``layers``, ``act_std``, ``act_stuck``, ``stuck_label``, ``step`` of a probe dict.
    """
    labels, label = list(probe["layers"]), probe.get("stuck_label", "stuck")
    marks = P.Marks()
    _, std = marks.line(labels, probe["act_std"], label="std")
    _, stuck = P.Marks().line(labels, probe["act_stuck"], log=False, label=label)
    data = [{"type": "bar", "x": labels, "y": std, "name": "activation std",
             "marker": {"color": T.layer_colors(len(labels))}, **P.LEFT},
            P.scatter(labels, stuck, mode="lines+markers", name=f"{label} fraction",
                      line={"color": T.PRE_CLIP, "width": 1.5}, **P.RIGHT),
            *marks.traces(**P.LEFT)]
    layout = P.right_axis_layout(f"Activations per layer, input → output (step {probe['step']})",
                                 P.yaxis("std of activations", type="log", range=P.log_range(*marks.extent())),
                                 P.yaxis(f"{label} fraction", **T.PERCENT_AXIS))
    layout["hovermode"] = "x unified"
    return P.figure(data, layout)


def time_figure(probe: dict, first: dict | None = None) -> go.Figure:
    """Recurrent net at one probe: ‖∂L/∂h_t‖ per time step (top, log) and std(h_t) (bottom).

    The backward signal through time is the classic picture: it grows toward early t when gradients
    explode and fades when they vanish. Requires ``time_backward_norm``, ``time_act_std``, ``time_stuck``.
    ``first``: the run's first probe, drawn beside the latest (dashed): a run that exploded or saturated later
    shows the picture its recurrent matrix drew at the start.
    """
    t = np.arange(len(probe["time_backward_norm"]))
    rho = probe.get("spectral_radius")
    gates, radii = list(probe.get("gate_names", ())), probe.get("gate_radii")
    which = (f", largest of the {len(gates)} gate blocks ({gates[int(np.argmax(radii))]})"
             if len(gates) > 1 and radii is not None else "")  # LSTM / GRU: one radius per gate block
    title = (f"Backward signal through time t (step {probe['step']}"
             + (f", ρ(W_hh) = {rho:.3g}{which})" if rho else ")"))
    top, bottom = P.Marks(), P.Marks()
    _, back = top.line(t, probe["time_backward_norm"], label="‖∂L/∂h_t‖")
    _, std = bottom.line(t, probe["time_act_std"], log=False, label="std(h_t)")
    stuck_label = probe.get("stuck_label", "saturated")  # "dead" for a ReLU RNN: units off on the whole batch
    _, stuck = bottom.line(t, probe["time_stuck"], log=False, label=stuck_label)
    data = [P.scatter(t, back, mode="lines+markers", marker={"size": 4}, name="‖∂L/∂h_t‖",
                      line={"color": T.PRE_CLIP, "width": 1.6}, **P.TOP),
            *_first_backward(t, first, probe, top),
            *top.traces(**P.TOP),
            P.scatter(t, std, mode="lines", name="std(h_t)", line={"color": T.POST_CLIP, "width": 1.4}, **P.BOTTOM),
            P.scatter(t, stuck, mode="lines", name=f"{stuck_label} units (whole batch)",
                      line={"color": T.REFERENCE, "width": 1.2, "dash": "dot"}, **P.BOTTOM),
            *bottom.traces(log=False, **P.BOTTOM)]
    layout = P.two_rows_layout(title, P.yaxis("‖∂L/∂h_t‖", type="log"), P.yaxis("std(h_t)"))
    return P.figure(data, layout)


def _first_backward(t: np.ndarray, first: dict | None, probe: dict, marks: P.Marks) -> list[dict]:
    """The first probe's ‖∂L/∂h_t‖ as a dashed line, when it is an earlier probe than the one drawn."""
    if not first or first.get("step") == probe.get("step") or "time_backward_norm" not in first:
        return []
    label = f"‖∂L/∂h_t‖ at step {first['step']}"
    _, back = marks.line(t, first["time_backward_norm"], label=label)
    return [P.scatter(t, back, mode="lines", name=label, line={"color": T.PRE_CLIP, "width": 1.2, "dash": "dash"},
                      opacity=0.6, **P.TOP)]


def probe_figure(probe: dict, first: dict | None = None) -> go.Figure:
    """The activation chart that fits the model: per time step for recurrent nets (with the ``first`` probe's
    backward signal beside the latest), per layer for MLPs."""
    return time_figure(probe, first) if "time_backward_norm" in probe else activation_figure(probe)
