"""One function per chart: plain data in (RunSnapshots, numpy arrays, probe dicts), a Plotly figure out.

Time charts draw ``snapshot.view`` (already decimated to a few thousand rows), so a long run costs the same
to draw as a short one. Values that are not finite (inf/NaN at the explosion step) are never dropped:
they become "✕ non-finite" markers at the top of the axis, and on log axes zeros become "○ zero" markers
at the bottom. Reference lines (clip threshold, healthy update ratio) are traces, not shapes, so they sit
in data coordinates on log axes and show in the legend.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import theme as T
from .data import live_clip, short_name, weight_params

NON_FINITE_NAME = "✕ non-finite"
ZERO_NAME = "○ zero"
MAX_EVENT_LINES = {"explosion": 1, "error": 1, "config_change": 12, "spike": 5}  # per run, newest kept
HEATMAP_MAX_COLS = 200  # columns drawn; each keeps the max of the steps it covers
HEATMAP_RANGE = (-3.0, 3.0)  # log10 ‖g‖ the colour scale covers at least: ~1 is mid-scale, 1e3+ is bright
MAX_POINTS = 400  # per line (~1 per pixel of a half-width chart): each refresh is a full redraw in the browser
MAX_MARKERS = 300  # "○ zero" markers per chart (a dead layer would otherwise add one per step)


def _thin_indices(y: np.ndarray, n: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ~n points of ``y``: the min and the max of each of n/2 buckets, so a spike survives."""
    size = y.size
    if size <= n:
        return np.arange(size)
    k = -(-size // (n // 2))  # bucket length
    m = -(-size // k)
    grid = np.full(m * k, np.nan)
    grid[:size] = y
    grid = grid.reshape(m, k)
    finite = np.isfinite(grid)
    hi = np.where(finite, grid, -np.inf).argmax(axis=1)  # an all-NaN bucket keeps its first point: the gap stays
    lo = np.where(finite, grid, np.inf).argmin(axis=1)
    base = np.arange(m) * k
    idx = np.unique(np.concatenate([base + lo, base + hi, [size - 1]]))
    return idx[idx < size]


class _Marks:
    """Collects the points a log chart cannot draw as a line, then adds them as marker traces."""

    def __init__(self):
        self.bad_x, self.bad_y, self.bad_text = [], [], []
        self.zero_x, self.zero_text = [], []
        self.finite: list[np.ndarray] = []

    def line(self, x, y, log: bool = True, label: str = "") -> tuple[np.ndarray, np.ndarray]:
        """Record the special points of ``y``; return (x, y) with them blanked (NaN draws a gap)."""
        x, y = np.asarray(x), np.asarray(y, dtype=float)
        bad = ~np.isfinite(y)
        zero = (y <= 0) & ~bad if log else np.zeros_like(bad)
        self.bad_x += list(x[bad])
        self.bad_y += list(y[bad])
        self.bad_text += [f"{label} {v}".strip() for v in y[bad]]
        self.zero_x += list(x[zero])
        self.zero_text += [f"{label} 0".strip()] * int(zero.sum())
        ok = ~(bad | zero)
        self.finite.append(y[ok])
        y = np.where(ok, y, np.nan)
        idx = _thin_indices(y)
        return x[idx], y[idx]

    def extent(self, log: bool = True) -> tuple[float, float]:
        vals = np.concatenate(self.finite) if self.finite else np.zeros(0)
        if vals.size == 0:
            return (0.1, 10.0) if log else (0.0, 1.0)
        lo, hi = float(vals.min()), float(vals.max())
        if log:
            return lo / 3.0, hi * 3.0
        pad = 0.08 * (hi - lo or 1.0)
        return lo - pad, hi + pad

    def add_to(self, fig: go.Figure, log: bool = True, **where) -> None:
        bottom, top = self.extent(log)
        if self.bad_x:
            fig.add_trace(go.Scatter(
                x=self.bad_x, y=[top] * len(self.bad_x), mode="markers", name=NON_FINITE_NAME,
                hovertext=self.bad_text, hoverinfo="x+text",
                marker={"symbol": "x-thin-open", "size": 12, "line": {"width": 2}, "color": T.NON_FINITE},
                cliponaxis=False), **where)
        if self.zero_x:
            keep = np.unique(np.linspace(0, len(self.zero_x) - 1, MAX_MARKERS).astype(int))
            self.zero_x, self.zero_text = list(np.asarray(self.zero_x)[keep]), list(np.asarray(self.zero_text)[keep])
            fig.add_trace(go.Scatter(
                x=self.zero_x, y=[bottom] * len(self.zero_x), mode="markers", name=ZERO_NAME,
                hovertext=self.zero_text, hoverinfo="x+text",
                marker={"symbol": "circle-open", "size": 7, "color": T.ZERO}, cliponaxis=False), **where)


def _band(fig, snap, column: str, color: str, marks: _Marks, **where) -> None:
    """Min-max envelope of decimated buckets, so a one-step spike stays visible after folding."""
    lo, hi = snap.view["lo"][:, snap.columns.index(column)], snap.view["hi"][:, snap.columns.index(column)]
    if np.array_equal(lo, hi, equal_nan=True):
        return  # no buckets yet: every row is a single step
    x = snap.view["step"]
    ok_lo, ok_hi = np.isfinite(lo) & (lo > 0), np.isfinite(hi) & (hi > 0)
    marks.finite.append(hi[ok_hi])  # the markers go above the envelope too; its own specials are the line's
    for y, fill in ((np.where(ok_lo, lo, np.nan), None), (np.where(ok_hi, hi, np.nan), "tonexty")):
        idx = _thin_indices(y)
        fig.add_trace(go.Scatter(x=x[idx], y=y[idx], mode="lines", line={"width": 0, "color": color}, fill=fill,
                                 fillcolor=_alpha(color, 0.15), showlegend=False, hoverinfo="skip"), **where)


def _alpha(hex_color: str, a: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{a})"


def _event_lines(fig: go.Figure, snaps: Sequence, labelled: bool) -> None:
    """Vertical lines at explosions and live config changes (labelled) and at spikes (one legend entry)."""
    spikes = False
    for snap in snaps:
        by_kind: dict[str, list[dict]] = {}
        for e in snap.events:
            by_kind.setdefault(e.get("kind", ""), []).append(e)
        for kind, events in by_kind.items():
            keep = MAX_EVENT_LINES.get(kind, 0)
            for k, e in enumerate(events[-keep:] if keep else []):
                color = T.EVENT_COLORS[kind]
                fig.add_shape(type="line", xref="x", yref="paper", x0=e["step"], x1=e["step"], y0=0, y1=1,
                              line={"color": color, "width": 1.5 if kind == "explosion" else 1,
                                    "dash": T.EVENT_DASH[kind]}, layer="above")
                if kind == "spike":  # frequent while a run blows up: labels would pile up
                    spikes = True
                    continue
                text = {"explosion": "✕ exploded", "error": "error"}.get(kind, e.get("message", ""))
                y = 1.0 if kind in ("explosion", "error") else 0.9 - 0.1 * (k % 3)  # stagger successive changes
                fig.add_annotation(x=e["step"], xref="x", y=y, yref="paper", showarrow=False,
                                   text=f"{snap.label}: {text}" if labelled else text, xanchor="left",
                                   yanchor="top", font={"size": 10, "color": color},
                                   bgcolor="rgba(255,255,255,0.75)")
    if spikes:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="spike",
                                 line={"color": T.EVENT_COLORS["spike"], "dash": T.EVENT_DASH["spike"], "width": 1}))


def _log_range(lo: float, hi: float, decades: float = 2.0) -> list[float]:
    """A log-axis range (in log10 units) spanning at least ``decades``, so 10% differences do not look huge."""
    a, b = np.log10(lo), np.log10(hi)
    if b - a < decades:
        a = b - decades
    return [float(a), float(b)]


def _finish(fig: go.Figure) -> go.Figure:
    # 10⁵ rather than 100k (magnitudes are the point here); no 2s and 5s between decades.
    fig.update_yaxes(exponentformat="power", minorloglabels="none", **T.AXIS)
    fig.update_xaxes(**T.AXIS)
    return fig


def _colors(n: int, colors: Sequence[str] | None) -> list[str]:
    return list(colors) if colors is not None else [T.run_color(i) for i in range(n)]


def loss_figure(snaps: Sequence, colors: Sequence[str] | None = None) -> go.Figure:
    """Training loss (log y) and test accuracy from the probes (right axis, 0–1), for one or more runs.

    Requires: each snapshot's ``view`` with a ``loss`` column, ``probes`` (``step``, ``test_accuracy``), ``events``.
    """
    multi, colors = len(snaps) > 1, _colors(len(snaps), colors)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.update_layout(**T.base_layout("Loss and test accuracy"))
    marks = _Marks()
    for snap, color in zip(snaps, colors, strict=True):
        c = color if multi else T.LOSS
        x, y = marks.line(*snap.series("loss"), label=f"{snap.label} loss" if multi else "loss")
        _band(fig, snap, "loss", c, marks, secondary_y=False)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{snap.label} loss" if multi else "loss",
                                 line={"color": c, "width": 1.6}), secondary_y=False)
        if snap.probes:
            px = [p["step"] for p in snap.probes]
            py = [p["test_accuracy"] for p in snap.probes]
            fig.add_trace(go.Scatter(x=px, y=py, mode="lines+markers", marker={"size": 4},
                                     name=f"{snap.label} test acc." if multi else "test accuracy",
                                     line={"color": color if multi else T.ACCURACY, "width": 1.2, "dash": "dot"}),
                          secondary_y=True)
    marks.add_to(fig, secondary_y=False)
    _event_lines(fig, snaps, multi)
    fig.update_yaxes(type="log", title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="test accuracy", secondary_y=True, **T.PERCENT_AXIS)
    return _finish(fig)


def grad_norm_figure(snaps: Sequence, colors: Sequence[str] | None = None) -> go.Figure:
    """Global gradient norm before and after clipping (log y), with each run's norm-clip threshold as a line.

    Requires: ``grad_norm_pre_clip`` / ``grad_norm_post_clip`` columns, ``config`` and ``events`` (live clip changes).
    One run: pre-clip red, post-clip blue. Several: one colour per run, pre-clip solid, post-clip dotted.
    """
    multi, colors = len(snaps) > 1, _colors(len(snaps), colors)
    fig = go.Figure(layout=T.base_layout("Gradient norm: before and after clipping"))
    marks = _Marks()
    x_end = max((int(s.view["step"][-1]) for s in snaps if len(s.view["step"])), default=1)
    for snap, color in zip(snaps, colors, strict=True):
        pre_c, post_c = (color, color) if multi else (T.PRE_CLIP, T.POST_CLIP)
        prefix = f"{snap.label} " if multi else ""
        _band(fig, snap, "grad_norm_pre_clip", pre_c, marks)
        # Post-clip dashed on top of pre-clip: without clipping they coincide and both stay visible.
        for col, c, dash, width, name in (("grad_norm_pre_clip", pre_c, "solid", 2.5, "pre-clip"),
                                          ("grad_norm_post_clip", post_c, "dot" if multi else "dash", 1.8,
                                           "post-clip")):
            x, y = marks.line(*snap.series(col), label=prefix + name)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=prefix + name,
                                     line={"color": c, "width": width, "dash": dash}))
        mode, threshold, _ = live_clip(snap)
        if mode == "norm":
            fig.add_trace(go.Scatter(x=[0, x_end], y=[threshold, threshold], mode="lines",
                                     name=f"{prefix}clip threshold {threshold:g}",
                                     line={"color": color if multi else T.THRESHOLD, "width": 1.2,
                                           "dash": "longdashdot"},
                                     hoverinfo="name"))
    marks.add_to(fig)
    _event_lines(fig, snaps, multi)
    fig.update_yaxes(type="log", title_text="‖g‖ (global L2)")
    return _finish(fig)


def layer_heatmap(snap, max_cols: int = HEATMAP_MAX_COLS) -> go.Figure:
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
    if steps.size > max_cols:
        starts = np.unique(np.linspace(0, steps.size, max_cols, endpoint=False).astype(int))
        z = np.fmax.reduceat(z, starts, axis=1)  # fmax: a NaN (gap) never hides a finite value
        bad = np.logical_or.reduceat(bad, starts, axis=1)
        steps = steps[np.r_[starts[1:], steps.size] - 1]  # each column is drawn at its last step
    labels = [short_name(p) for p in params]
    finite = z[np.isfinite(z)]  # one colour scale for every run, widened to fit: bright always means large
    zmin = min(HEATMAP_RANGE[0], float(finite.min())) if finite.size else HEATMAP_RANGE[0]
    zmax = max(HEATMAP_RANGE[1], float(finite.max())) if finite.size else HEATMAP_RANGE[1]
    fig = go.Figure(layout=T.base_layout("Gradient norm per layer over time"))
    fig.add_trace(go.Heatmap(x=steps, y=labels, z=z, zmin=zmin, zmax=zmax, colorscale=T.HEATMAP_SCALE,
                             name="log10 ‖g‖",
                             colorbar={"title": {"text": "log10 ‖g‖", "side": "right"}, "thickness": 12},
                             hovertemplate="step %{x}<br>%{y}<br>log10 ‖g‖ = %{z:.2f}<extra></extra>"))
    rows, cols = np.nonzero(bad)
    if rows.size:
        fig.add_trace(go.Scatter(x=steps[cols], y=[labels[r] for r in rows], mode="markers", name=NON_FINITE_NAME,
                                 marker={"symbol": "x-thin-open", "size": 9, "line": {"width": 2},
                                         "color": "#22D3EE"}, hoverinfo="x+y+name"))
    _event_lines(fig, [snap], False)
    fig.update_layout(hovermode="closest")
    return _finish(fig)


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
    multi, colors = len(grad_norms) > 1, _colors(len(grad_norms), colors)
    title = "Gradient flow now, input → output" + (f" (step {step})" if step is not None else "")
    fig = go.Figure(layout=T.base_layout(title))
    marks = _Marks()
    cleaned = {run: marks.line(labels, np.asarray(v, dtype=float)[idx])[1] for run, v in grad_norms.items()}
    _, top = marks.extent()
    for (run, y), color in zip(cleaned.items(), colors, strict=True):
        raw = np.asarray(grad_norms[run], dtype=float)[idx]
        bad = ~np.isfinite(raw)
        bar_colors = [T.NON_FINITE if b else (color if multi else c)
                      for b, c in zip(bad, T.layer_colors(len(labels)), strict=True)]
        fig.add_trace(go.Bar(x=labels, y=np.where(bad, top, y), name=run, marker={"color": bar_colors},
                             text=["✕ " + str(v) if b else "" for b, v in zip(bad, raw, strict=True)],
                             textposition="inside", hovertemplate="%{x}: %{customdata}<extra>" + run + "</extra>",
                             customdata=[f"{v:.3g}" for v in raw], showlegend=multi))
    marks.bad_x = []  # drawn as red bars above; zeros get "○ zero" markers at the bottom
    marks.add_to(fig)
    if any(not np.isfinite(np.asarray(v, dtype=float)[idx]).all() for v in grad_norms.values()):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=NON_FINITE_NAME,
                                 marker={"symbol": "square", "color": T.NON_FINITE, "size": 10}))
    fig.update_layout(barmode="group", hovermode="closest")
    fig.update_yaxes(type="log", title_text="‖g‖ per weight matrix", range=_log_range(*marks.extent()))
    return _finish(fig)


def weights_updates_figure(snap) -> go.Figure:
    """Weight norm per layer (top) and update ratio ‖Δw‖/‖w‖ per layer (bottom, log, ~1e-3 healthy).

    Requires: ``weight_norm/<param>`` and ``update_ratio/<param>`` columns of the view, ``names``, ``events``.
    """
    params = weight_params(snap.names)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    fig.update_layout(**T.base_layout("Weight norms and update ratios", height=T.CHART_HEIGHT + 40))
    show_legend = len(params) <= 8
    x_end = int(snap.view["step"][-1]) if len(snap.view["step"]) else 1
    for row, kind, log in ((1, "weight_norm", True), (2, "update_ratio", True)):
        marks = _Marks()
        for p, color in zip(params, T.layer_colors(len(params)), strict=True):
            x, y = marks.line(*snap.series(f"{kind}/{p}"), log=log, label=short_name(p))
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=short_name(p), legendgroup=p,
                                     showlegend=show_legend and row == 1, line={"color": color, "width": 1.3}),
                          row=row, col=1)
        if row == 2:
            fig.add_trace(go.Scatter(x=[0, x_end], y=[1e-3, 1e-3], mode="lines", name="healthy ≈ 1e-3",
                                     line={"color": T.REFERENCE, "dash": "dash", "width": 1.2}, hoverinfo="name"),
                          row=2, col=1)
        marks.add_to(fig, log=log, row=row, col=1)
    _event_lines(fig, [snap], False)
    fig.update_yaxes(type="log", title_text="‖w‖", row=1, col=1)
    fig.update_yaxes(type="log", title_text="‖Δw‖/‖w‖", row=2, col=1)
    return _finish(fig)


def activation_figure(probe: dict) -> go.Figure:
    """MLP activations at one probe: std per layer (bars) and the dead/saturated fraction (line, right axis).

    Requires: ``layers``, ``act_std``, ``act_stuck``, ``stuck_label``, ``step`` of a probe dict.
    """
    labels, label = list(probe["layers"]), probe.get("stuck_label", "stuck")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.update_layout(**T.base_layout(f"Activations per layer, input → output (step {probe['step']})"))
    marks = _Marks()
    _, std = marks.line(labels, probe["act_std"], label="std")
    fig.add_trace(go.Bar(x=labels, y=std, name="activation std", marker={"color": T.layer_colors(len(labels))}),
                  secondary_y=False)
    _, stuck = _Marks().line(labels, probe["act_stuck"], log=False, label=label)
    fig.add_trace(go.Scatter(x=labels, y=stuck, mode="lines+markers", name=f"{label} fraction",
                             line={"color": T.PRE_CLIP, "width": 1.5}), secondary_y=True)
    marks.add_to(fig, secondary_y=False)
    fig.update_yaxes(type="log", title_text="std of activations", range=_log_range(*marks.extent()),
                     secondary_y=False)
    fig.update_yaxes(title_text=f"{label} fraction", secondary_y=True, **T.PERCENT_AXIS)
    fig.update_layout(hovermode="x unified")
    return _finish(fig)


def time_figure(probe: dict) -> go.Figure:
    """Recurrent net at one probe: ‖∂L/∂h_t‖ per time step (top, log) and std(h_t) (bottom).

    The backward signal through time is the classic picture: it grows toward early t when gradients
    explode and fades when they vanish. Requires ``time_backward_norm``, ``time_act_std``, ``time_stuck``.
    """
    t = np.arange(len(probe["time_backward_norm"]))
    rho = probe.get("spectral_radius")
    title = (f"Backward signal through time t (step {probe['step']}"
             + (f", ρ(W_hh) = {rho:.3g})" if rho else ")"))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    fig.update_layout(**T.base_layout(title, height=T.CHART_HEIGHT + 40))
    top = _Marks()
    _, back = top.line(t, probe["time_backward_norm"], label="‖∂L/∂h_t‖")
    fig.add_trace(go.Scatter(x=t, y=back, mode="lines+markers", marker={"size": 4}, name="‖∂L/∂h_t‖",
                             line={"color": T.PRE_CLIP, "width": 1.6}), row=1, col=1)
    top.add_to(fig, row=1, col=1)
    bottom = _Marks()
    _, std = bottom.line(t, probe["time_act_std"], log=False, label="std(h_t)")
    fig.add_trace(go.Scatter(x=t, y=std, mode="lines", name="std(h_t)", line={"color": T.POST_CLIP, "width": 1.4}),
                  row=2, col=1)
    _, stuck = bottom.line(t, probe["time_stuck"], log=False, label="saturated")
    fig.add_trace(go.Scatter(x=t, y=stuck, mode="lines", name="saturated fraction",
                             line={"color": T.REFERENCE, "width": 1.2, "dash": "dot"}), row=2, col=1)
    bottom.add_to(fig, log=False, row=2, col=1)
    fig.update_yaxes(type="log", title_text="‖∂L/∂h_t‖", row=1, col=1)
    fig.update_yaxes(title_text="std(h_t)", row=2, col=1)

    return _finish(fig)


def probe_figure(probe: dict) -> go.Figure:
    """The activation chart that fits the model: per time step for recurrent nets, per layer for MLPs."""
    return time_figure(probe) if "time_backward_norm" in probe else activation_figure(probe)
