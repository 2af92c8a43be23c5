"""The parts every chart in ``components/charts.py`` is built from: axes, the two subplot layouts, lines
thinned to what a chart can show, the markers for values a log axis cannot draw, bands and event lines.

Values that are not finite (inf/NaN at the explosion step) are never dropped: they become "✕ non-finite"
markers at the top of the axis, and on log axes zeros become "○ zero" markers at the bottom. Reference lines
(clip threshold, healthy update ratio) are traces, not shapes, so they sit in data coordinates on log axes and
show in the legend.

Each figure is assembled as plain dicts (traces with a "type", one layout dict, subplots and the right-hand
axis written out as ``xaxis2``/``yaxis2`` with their domains) and handed to ``go.Figure`` once, in ``figure``:
Plotly validates every property on each ``add_trace``/``update_*`` call, and ``make_subplots`` builds its grid
the same way, which made building the six live figures cost ~105 ms of server time against ~18 ms with one
constructor call per figure (bench P4). Data stay numpy arrays: Plotly validates and encodes them far faster
than lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from training.run import Snapshot

from . import theme as T

NON_FINITE_NAME = "✕ non-finite"
ZERO_NAME = "○ zero"
MAX_EVENT_LINES = {"explosion": 1, "error": 1, "config_change": 12, "spike": 5}  # per run, newest kept
MAX_POINTS = 400  # per line (~1 per pixel of a half-width chart): each refresh is a full redraw in the browser
MAX_MARKERS = 300  # "○ zero" markers per chart (a dead layer would otherwise add one per step)


def thin_indices(y: np.ndarray, n: int = MAX_POINTS) -> np.ndarray:
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
LEFT, RIGHT = {"xaxis": "x", "yaxis": "y"}, {"xaxis": "x", "yaxis": "y2"}  # right_axis_layout
TOP, BOTTOM = {"xaxis": "x", "yaxis": "y"}, {"xaxis": "x2", "yaxis": "y2"}  # two_rows_layout


def xaxis(**props) -> dict:
    return {**props, **T.AXIS}


def yaxis(title: str | None = None, **props) -> dict:
    if title is not None:
        props["title"] = {"text": title}
    # 10⁵ rather than 100k (magnitudes are the point here); no 2s and 5s between decades.
    return {**props, "exponentformat": "power", "minorloglabels": "none", **T.AXIS}


def right_axis_layout(title: str, left: dict, right: dict) -> dict:
    """One plot with a second y axis on the right, as ``make_subplots(specs=[[{"secondary_y": True}]])`` lays it
    out (the x axis stops short of the right edge to leave room for the right axis' ticks)."""
    return {**T.base_layout(title),
            "xaxis": xaxis(anchor="y", domain=[0.0, 0.94]),
            "yaxis": {"anchor": "x", "domain": [0.0, 1.0], **left},
            "yaxis2": {"anchor": "x", "overlaying": "y", "side": "right", **right}}


def two_rows_layout(title: str, top: dict, bottom: dict) -> dict:
    """Two plots stacked on one shared step axis, as ``make_subplots(rows=2, shared_xaxes=True,
    vertical_spacing=0.08)`` lays them out: zooming one zooms both, tick labels only under the bottom one."""
    return {**T.base_layout(title, height=T.CHART_HEIGHT + 40),
            "xaxis": xaxis(anchor="y", domain=[0.0, 1.0], matches="x2", showticklabels=False),
            "yaxis": {"anchor": "x", "domain": [0.54, 1.0], **top},
            "xaxis2": xaxis(anchor="y2", domain=[0.0, 1.0]),
            "yaxis2": {"anchor": "x2", "domain": [0.0, 0.46], **bottom}}


@dataclass(frozen=True)
class RawFigure:
    """A figure's traces and layout as the chart functions build them (numpy arrays, no Plotly template)."""

    data: list[dict]
    layout: dict


_RAW = ContextVar("raw_figures", default=False)
_POINTS = ContextVar("line_points", default=MAX_POINTS)


@contextmanager
def raw_figures(points: int = MAX_POINTS):
    """Within it, ``figure`` returns a ``RawFigure`` and a line keeps at most ``points`` points (``line_points``):
    the live rows route (components/live_rows.py) reads only the numbers, and validating them would cost it ~3 ms
    a chart, 50 times the building (four polls a second)."""
    tokens = _RAW.set(True), _POINTS.set(points)
    try:
        yield
    finally:
        _RAW.reset(tokens[0])
        _POINTS.reset(tokens[1])


def line_points() -> int:
    """The most points a line keeps (``thin_indices``): MAX_POINTS, or the rows route's, inside ``raw_figures``."""
    return _POINTS.get()


def figure(data: list[dict], layout: dict) -> go.Figure | RawFigure:
    """The one place a Plotly object is built: every property is validated once, here."""
    return RawFigure(data, layout) if _RAW.get() else go.Figure(data=data, layout=layout)


def scatter(x, y, **props) -> dict:
    return {"type": "scatter", "x": x, "y": y, **props}


class Marks:
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
        idx = thin_indices(y, line_points())
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
            out.append(scatter(
                self.bad_x, [top] * len(self.bad_x), mode="markers", name=NON_FINITE_NAME,
                hovertext=self.bad_text, hoverinfo="x+text",
                marker={"symbol": "x-thin-open", "size": 12, "line": {"width": 2}, "color": T.NON_FINITE},
                cliponaxis=False, **where))
        if self.zero_x:
            keep = np.unique(np.linspace(0, len(self.zero_x) - 1, MAX_MARKERS).astype(int))
            self.zero_x, self.zero_text = list(np.asarray(self.zero_x)[keep]), list(np.asarray(self.zero_text)[keep])
            out.append(scatter(
                self.zero_x, [bottom] * len(self.zero_x), mode="markers", name=ZERO_NAME,
                hovertext=self.zero_text, hoverinfo="x+text",
                marker={"symbol": "circle-open", "size": 7, "color": T.ZERO}, cliponaxis=False, **where))
        return out


def band(snap: Snapshot, column: str, color: str, marks: Marks, **where) -> list[dict]:
    """Min-max envelope of decimated buckets, so a one-step spike stays visible after folding."""
    lo, hi = snap.view["lo"][:, snap.columns.index(column)], snap.view["hi"][:, snap.columns.index(column)]
    if np.array_equal(lo, hi, equal_nan=True):
        return []  # no buckets yet: every row is a single step
    x = snap.view["step"]
    ok_lo, ok_hi = np.isfinite(lo) & (lo > 0), np.isfinite(hi) & (hi > 0)
    marks.finite.append(hi[ok_hi])  # the markers go above the envelope too; its own specials are the line's
    out = []
    for y, fill in ((np.where(ok_lo, lo, np.nan), None), (np.where(ok_hi, hi, np.nan), "tonexty")):
        idx = thin_indices(y)
        trace = scatter(x[idx], y[idx], mode="lines", line={"width": 0, "color": color},
                        fillcolor=_alpha(color, 0.15), showlegend=False, hoverinfo="skip", **where)
        if fill:
            trace["fill"] = fill
        out.append(trace)
    return out


def _alpha(hex_color: str, a: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{a})"


def event_lines(layout: dict, snaps: Sequence[Snapshot], labelled: bool) -> list[dict]:
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
    return [scatter([None], [None], mode="lines", name="spike",
                    line={"color": T.EVENT_COLORS["spike"], "dash": T.EVENT_DASH["spike"], "width": 1})]


LOG_STEP = 0.5  # a one-step chart's log axis ends on half decades: it stays put while the values move within them


def log_range(lo: float, hi: float, decades: float = 2.0) -> list[float]:
    """A log-axis range (in log10 units) spanning at least ``decades``, so 10% differences do not look huge, its
    ends rounded out to LOG_STEP: a live one-step chart's axis then moves when a value crosses a half decade, not
    at every step, and the page redraws only the bars (components/live.js)."""
    b = np.ceil(np.log10(hi) / LOG_STEP) * LOG_STEP
    a = min(np.floor(np.log10(lo) / LOG_STEP) * LOG_STEP, b - decades)
    return [float(a), float(b)]


def run_colors(n: int, colors: Sequence[str] | None) -> list[str]:
    return list(colors) if colors is not None else [T.run_color(i) for i in range(n)]
