"""One function per chart: plain data in (RunSnapshots, numpy arrays, probe dicts), a Plotly figure out.

Time charts draw ``snapshot.view`` (already decimated to a few thousand rows), so a long run costs the same
to draw as a short one. Values that are not finite (inf/NaN at the explosion step) are never dropped:
they become "✕ non-finite" markers at the top of the axis, and on log axes zeros become "○ zero" markers
at the bottom. Reference lines (clip threshold, healthy update ratio) are traces, not shapes, so they sit
in data coordinates on log axes and show in the legend.

Each figure is assembled as plain dicts (traces with a "type", one layout dict, subplots and the right-hand
axis written out as ``xaxis2``/``yaxis2`` with their domains) and handed to ``go.Figure`` once: Plotly validates
every property on each ``add_trace``/``update_*`` call, and ``make_subplots`` builds its grid the same way,
which made building the six live figures cost ~105 ms of server time against ~18 ms with one constructor
call per figure (bench P4). Data stay numpy arrays: Plotly validates and encodes them far faster than lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from training.run import RunSnapshot, Snapshot

from . import theme as T
from .data import accuracy_label, live_clip, short_name, weight_params

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


# Where a trace is drawn in the two subplot layouts below (a lone-axis figure needs no keys).
LEFT, RIGHT = {"xaxis": "x", "yaxis": "y"}, {"xaxis": "x", "yaxis": "y2"}  # _right_axis_layout
TOP, BOTTOM = {"xaxis": "x", "yaxis": "y"}, {"xaxis": "x2", "yaxis": "y2"}  # _two_rows_layout


def _xaxis(**props) -> dict:
    return {**props, **T.AXIS}


def _yaxis(title: str | None = None, **props) -> dict:
    if title is not None:
        props["title"] = {"text": title}
    # 10⁵ rather than 100k (magnitudes are the point here); no 2s and 5s between decades.
    return {**props, "exponentformat": "power", "minorloglabels": "none", **T.AXIS}


def _right_axis_layout(title: str, left: dict, right: dict) -> dict:
    """One plot with a second y axis on the right, as ``make_subplots(specs=[[{"secondary_y": True}]])`` lays it
    out (the x axis stops short of the right edge to leave room for the right axis' ticks)."""
    return {**T.base_layout(title),
            "xaxis": _xaxis(anchor="y", domain=[0.0, 0.94]),
            "yaxis": {"anchor": "x", "domain": [0.0, 1.0], **left},
            "yaxis2": {"anchor": "x", "overlaying": "y", "side": "right", **right}}


def _two_rows_layout(title: str, top: dict, bottom: dict) -> dict:
    """Two plots stacked on one shared step axis, as ``make_subplots(rows=2, shared_xaxes=True,
    vertical_spacing=0.08)`` lays them out: zooming one zooms both, tick labels only under the bottom one."""
    return {**T.base_layout(title, height=T.CHART_HEIGHT + 40),
            "xaxis": _xaxis(anchor="y", domain=[0.0, 1.0], matches="x2", showticklabels=False),
            "yaxis": {"anchor": "x", "domain": [0.54, 1.0], **top},
            "xaxis2": _xaxis(anchor="y2", domain=[0.0, 1.0]),
            "yaxis2": {"anchor": "x2", "domain": [0.0, 0.46], **bottom}}


def _figure(data: list[dict], layout: dict) -> go.Figure:
    """The one place a Plotly object is built: every property is validated once, here."""
    return go.Figure(data=data, layout=layout)


def _scatter(x, y, **props) -> dict:
    return {"type": "scatter", "x": x, "y": y, **props}


class _Marks:
    """Collects the points a log chart cannot draw as a line, then turns them into marker traces."""

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

    def traces(self, log: bool = True, **where) -> list[dict]:
        """Non-finite points at the top of the axis, zeros (log axes) at the bottom."""
        bottom, top = self.extent(log)
        out = []
        if self.bad_x:
            out.append(_scatter(
                self.bad_x, [top] * len(self.bad_x), mode="markers", name=NON_FINITE_NAME,
                hovertext=self.bad_text, hoverinfo="x+text",
                marker={"symbol": "x-thin-open", "size": 12, "line": {"width": 2}, "color": T.NON_FINITE},
                cliponaxis=False, **where))
        if self.zero_x:
            keep = np.unique(np.linspace(0, len(self.zero_x) - 1, MAX_MARKERS).astype(int))
            self.zero_x, self.zero_text = list(np.asarray(self.zero_x)[keep]), list(np.asarray(self.zero_text)[keep])
            out.append(_scatter(
                self.zero_x, [bottom] * len(self.zero_x), mode="markers", name=ZERO_NAME,
                hovertext=self.zero_text, hoverinfo="x+text",
                marker={"symbol": "circle-open", "size": 7, "color": T.ZERO}, cliponaxis=False, **where))
        return out


def _band(snap: Snapshot, column: str, color: str, marks: _Marks, **where) -> list[dict]:
    """Min-max envelope of decimated buckets, so a one-step spike stays visible after folding."""
    lo, hi = snap.view["lo"][:, snap.columns.index(column)], snap.view["hi"][:, snap.columns.index(column)]
    if np.array_equal(lo, hi, equal_nan=True):
        return []  # no buckets yet: every row is a single step
    x = snap.view["step"]
    ok_lo, ok_hi = np.isfinite(lo) & (lo > 0), np.isfinite(hi) & (hi > 0)
    marks.finite.append(hi[ok_hi])  # the markers go above the envelope too; its own specials are the line's
    out = []
    for y, fill in ((np.where(ok_lo, lo, np.nan), None), (np.where(ok_hi, hi, np.nan), "tonexty")):
        idx = _thin_indices(y)
        trace = _scatter(x[idx], y[idx], mode="lines", line={"width": 0, "color": color},
                         fillcolor=_alpha(color, 0.15), showlegend=False, hoverinfo="skip", **where)
        if fill:
            trace["fill"] = fill
        out.append(trace)
    return out


def _alpha(hex_color: str, a: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{a})"


def _event_lines(layout: dict, snaps: Sequence[Snapshot], labelled: bool) -> list[dict]:
    """Vertical lines at explosions and live config changes (labelled) and at spikes (one legend entry).

    The lines and labels go into ``layout``; the returned traces (the spikes' legend entry) go last in the data.
    """
    shapes, notes, spikes = [], [], False
    for snap in snaps:
        by_kind: dict[str, list[dict]] = {}
        for e in snap.events:
            by_kind.setdefault(e.get("kind", ""), []).append(e)
        for kind, events in by_kind.items():
            keep = MAX_EVENT_LINES.get(kind, 0)
            for k, e in enumerate(events[-keep:] if keep else []):
                color = T.EVENT_COLORS[kind]
                shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": e["step"], "x1": e["step"],
                               "y0": 0, "y1": 1, "layer": "above",
                               "line": {"color": color, "width": 1.5 if kind == "explosion" else 1,
                                        "dash": T.EVENT_DASH[kind]}})
                if kind == "spike":  # frequent while a run blows up: labels would pile up
                    spikes = True
                    continue
                text = {"explosion": "✕ exploded", "error": "error"}.get(kind, e.get("message", ""))
                y = 1.0 if kind in ("explosion", "error") else 0.9 - 0.1 * (k % 3)  # stagger successive changes
                notes.append({"x": e["step"], "xref": "x", "y": y, "yref": "paper", "showarrow": False,
                              "text": f"{snap.label}: {text}" if labelled else text, "xanchor": "left",
                              "yanchor": "top", "font": {"size": 10, "color": color},
                              "bgcolor": "rgba(255,255,255,0.75)"})
    if shapes:
        layout["shapes"] = shapes
    if notes:
        layout["annotations"] = notes
    if not spikes:
        return []
    return [_scatter([None], [None], mode="lines", name="spike",
                     line={"color": T.EVENT_COLORS["spike"], "dash": T.EVENT_DASH["spike"], "width": 1})]


def _log_range(lo: float, hi: float, decades: float = 2.0) -> list[float]:
    """A log-axis range (in log10 units) spanning at least ``decades``, so 10% differences do not look huge."""
    a, b = np.log10(lo), np.log10(hi)
    if b - a < decades:
        a = b - decades
    return [float(a), float(b)]


def _colors(n: int, colors: Sequence[str] | None) -> list[str]:
    return list(colors) if colors is not None else [T.run_color(i) for i in range(n)]


def loss_figure(snaps: Sequence[Snapshot], colors: Sequence[str] | None = None) -> go.Figure:
    """Training loss (log y) and test accuracy from the probes (right axis, 0–1), for one or more runs.

    Requires: each snapshot's ``view`` with a ``loss`` column, ``probes`` (``step``, ``test_accuracy``), ``events``.
    """
    multi, colors = len(snaps) > 1, _colors(len(snaps), colors)
    data, marks = [], _Marks()
    for snap, color in zip(snaps, colors, strict=True):
        c = color if multi else T.LOSS
        x, y = marks.line(*snap.series("loss"), label=f"{snap.label} loss" if multi else "loss")
        data += _band(snap, "loss", c, marks, **LEFT)
        data.append(_scatter(x, y, mode="lines", name=f"{snap.label} loss" if multi else "loss",
                             line={"color": c, "width": 1.6}, **LEFT))
        evals = [p for p in snap.probes if p.get("test_accuracy") is not None]  # probes between evaluations: None
        if evals:
            px = [p["step"] for p in evals]
            py = [p["test_accuracy"] for p in evals]
            data.append(_scatter(px, py, mode="lines+markers", marker={"size": 4},
                                 name=f"{snap.label} test acc." if multi else "test accuracy",
                                 line={"color": color if multi else T.ACCURACY, "width": 1.2, "dash": "dot"},
                                 **RIGHT))
    data += marks.traces(**LEFT)
    acc_title = accuracy_label(snaps[0].config).lower() if snaps else "test accuracy"  # adding: within 0.04
    layout = _right_axis_layout("Loss and test accuracy", _yaxis("loss", type="log"),
                                _yaxis(acc_title, **T.PERCENT_AXIS))
    data += _event_lines(layout, snaps, multi)
    return _figure(data, layout)


def grad_norm_figure(snaps: Sequence[Snapshot], colors: Sequence[str] | None = None) -> go.Figure:
    """Global gradient norm before and after clipping (log y), with each run's norm-clip threshold as a line.

    Requires: ``grad_norm_pre_clip`` / ``grad_norm_post_clip`` columns and ``clip`` (the clipping now).
    One run: pre-clip red, post-clip blue. Several: one colour per run, pre-clip solid, post-clip dotted.
    """
    multi, colors = len(snaps) > 1, _colors(len(snaps), colors)
    data, marks = [], _Marks()
    x_end = max((int(s.view["step"][-1]) for s in snaps if len(s.view["step"])), default=1)
    for snap, color in zip(snaps, colors, strict=True):
        pre_c, post_c = (color, color) if multi else (T.PRE_CLIP, T.POST_CLIP)
        prefix = f"{snap.label} " if multi else ""
        data += _band(snap, "grad_norm_pre_clip", pre_c, marks)
        # Post-clip dashed on top of pre-clip: without clipping they coincide and both stay visible.
        for col, c, dash, width, name in (("grad_norm_pre_clip", pre_c, "solid", 2.5, "pre-clip"),
                                          ("grad_norm_post_clip", post_c, "dot" if multi else "dash", 1.8,
                                           "post-clip")):
            x, y = marks.line(*snap.series(col), label=prefix + name)
            data.append(_scatter(x, y, mode="lines", name=prefix + name,
                                 line={"color": c, "width": width, "dash": dash}))
        mode, threshold, _ = live_clip(snap)
        if mode == "norm":
            data.append(_scatter([0, x_end], [threshold, threshold], mode="lines",
                                 name=f"{prefix}clip threshold {threshold:g}",
                                 line={"color": color if multi else T.THRESHOLD, "width": 1.2, "dash": "longdashdot"},
                                 hoverinfo="name"))
    data += marks.traces()
    layout = {**T.base_layout("Gradient norm: before and after clipping"),
              "xaxis": _xaxis(), "yaxis": _yaxis("‖g‖ (global L2)", type="log")}
    data += _event_lines(layout, snaps, multi)
    return _figure(data, layout)


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
        data.append(_scatter(steps[cols], [labels[r] for r in rows], mode="markers", name=NON_FINITE_NAME,
                             marker={"symbol": "x-thin-open", "size": 9, "line": {"width": 2}, "color": "#22D3EE"},
                             hoverinfo="x+y+name"))
    layout = {**T.base_layout("Gradient norm per layer over time"), "hovermode": "closest",
              "xaxis": _xaxis(), "yaxis": _yaxis()}
    data += _event_lines(layout, [snap], False)
    return _figure(data, layout)


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
    data, marks = [], _Marks()
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
        data.append(_scatter([None], [None], mode="markers", name=NON_FINITE_NAME,
                             marker={"symbol": "square", "color": T.NON_FINITE, "size": 10}))
    layout = {**T.base_layout(title), "barmode": "group", "hovermode": "closest", "xaxis": _xaxis(),
              "yaxis": _yaxis("‖g‖ per weight matrix", type="log", range=_log_range(*marks.extent()))}
    return _figure(data, layout)


def weights_updates_figure(snap: RunSnapshot) -> go.Figure:
    """Weight norm per layer (top) and update ratio ‖Δw‖/‖w‖ per layer (bottom, log, ~1e-3 healthy).

    Requires: ``weight_norm/<param>`` and ``update_ratio/<param>`` columns of the view, ``names``, ``events``.
    """
    params = weight_params(snap.names)
    show_legend = len(params) <= 8
    x_end = int(snap.view["step"][-1]) if len(snap.view["step"]) else 1
    data = []
    for where, kind, log in ((TOP, "weight_norm", True), (BOTTOM, "update_ratio", True)):
        marks = _Marks()
        for p, color in zip(params, T.layer_colors(len(params)), strict=True):
            x, y = marks.line(*snap.series(f"{kind}/{p}"), log=log, label=short_name(p))
            data.append(_scatter(x, y, mode="lines", name=short_name(p), legendgroup=p,
                                 showlegend=show_legend and where is TOP, line={"color": color, "width": 1.3},
                                 **where))
        if where is BOTTOM:
            data.append(_scatter([0, x_end], [1e-3, 1e-3], mode="lines", name="healthy ≈ 1e-3",
                                 line={"color": T.REFERENCE, "dash": "dash", "width": 1.2}, hoverinfo="name",
                                 **where))
        data += marks.traces(log=log, **where)
    layout = _two_rows_layout("Weight norms and update ratios", _yaxis("‖w‖", type="log"),
                              _yaxis("‖Δw‖/‖w‖", type="log"))
    data += _event_lines(layout, [snap], False)
    return _figure(data, layout)


def activation_figure(probe: dict) -> go.Figure:
    """MLP activations at one probe: std per layer (bars) and the dead/saturated fraction (line, right axis).

    Requires: ``layers``, ``act_std``, ``act_stuck``, ``stuck_label``, ``step`` of a probe dict.
    """
    labels, label = list(probe["layers"]), probe.get("stuck_label", "stuck")
    marks = _Marks()
    _, std = marks.line(labels, probe["act_std"], label="std")
    _, stuck = _Marks().line(labels, probe["act_stuck"], log=False, label=label)
    data = [{"type": "bar", "x": labels, "y": std, "name": "activation std",
             "marker": {"color": T.layer_colors(len(labels))}, **LEFT},
            _scatter(labels, stuck, mode="lines+markers", name=f"{label} fraction",
                     line={"color": T.PRE_CLIP, "width": 1.5}, **RIGHT),
            *marks.traces(**LEFT)]
    layout = _right_axis_layout(f"Activations per layer, input → output (step {probe['step']})",
                                _yaxis("std of activations", type="log", range=_log_range(*marks.extent())),
                                _yaxis(f"{label} fraction", **T.PERCENT_AXIS))
    layout["hovermode"] = "x unified"
    return _figure(data, layout)


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
    top, bottom = _Marks(), _Marks()
    _, back = top.line(t, probe["time_backward_norm"], label="‖∂L/∂h_t‖")
    _, std = bottom.line(t, probe["time_act_std"], log=False, label="std(h_t)")
    stuck_label = probe.get("stuck_label", "saturated")  # "dead" for a ReLU RNN: units off on the whole batch
    _, stuck = bottom.line(t, probe["time_stuck"], log=False, label=stuck_label)
    data = [_scatter(t, back, mode="lines+markers", marker={"size": 4}, name="‖∂L/∂h_t‖",
                     line={"color": T.PRE_CLIP, "width": 1.6}, **TOP),
            *_first_backward(t, first, probe, top),
            *top.traces(**TOP),
            _scatter(t, std, mode="lines", name="std(h_t)", line={"color": T.POST_CLIP, "width": 1.4}, **BOTTOM),
            _scatter(t, stuck, mode="lines", name=f"{stuck_label} units (whole batch)",
                     line={"color": T.REFERENCE, "width": 1.2, "dash": "dot"}, **BOTTOM),
            *bottom.traces(log=False, **BOTTOM)]
    layout = _two_rows_layout(title, _yaxis("‖∂L/∂h_t‖", type="log"), _yaxis("std(h_t)"))
    return _figure(data, layout)


def _first_backward(t: np.ndarray, first: dict | None, probe: dict, marks: _Marks) -> list[dict]:
    """The first probe's ‖∂L/∂h_t‖ as a dashed line, when it is an earlier probe than the one drawn."""
    if not first or first.get("step") == probe.get("step") or "time_backward_norm" not in first:
        return []
    label = f"‖∂L/∂h_t‖ at step {first['step']}"
    _, back = marks.line(t, first["time_backward_norm"], label=label)
    return [_scatter(t, back, mode="lines", name=label, line={"color": T.PRE_CLIP, "width": 1.2, "dash": "dash"},
                     opacity=0.6, **TOP)]


def probe_figure(probe: dict, first: dict | None = None) -> go.Figure:
    """The activation chart that fits the model: per time step for recurrent nets (with the ``first`` probe's
    backward signal beside the latest), per layer for MLPs."""
    return time_figure(probe, first) if "time_backward_norm" in probe else activation_figure(probe)
