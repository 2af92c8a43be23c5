"""The stability map's figure: one heatmap cell per (x, y), coloured by its majority outcome over seeds.

Plain data in (``sweep.outcome_grid``'s arrays, a ``CriticalLine`` or None), a Plotly figure out; then the whole
map of a sweep with its picked cell outlined, and a running sweep's live state (the figure and its progress),
which the page and the map route (components/live_api.py) both build here, so they draw the same map.
"""

from __future__ import annotations

import time

import numpy as np
import plotly.graph_objects as go

from training import sweep as SW
from training.axes import value_text
from training.sweep import OUTCOMES

from . import theme as T
from .data import describe

COLORS = {"learned": "#2CA02C", "stuck": "#9CA3AF", "vanished": "#1F77B4", "exploded": "#D62728"}
LINE_COLOR = "#111827"
HEIGHT = 480  # px; the live map holds this space before its first draw, so the page does not jump


def colorscale() -> list:
    """A stepped scale: code k (OUTCOMES index) fills [k/n, (k+1)/n] with its outcome's colour, zmin -0.5."""
    n = len(OUTCOMES)
    scale = []
    for k, name in enumerate(OUTCOMES):
        scale += [[k / n, COLORS[name]], [(k + 1) / n, COLORS[name]]]
    return scale


def cell_text(counts_cell) -> str:
    """'learned 2 · exploded 1' for a cell's seed counts; 'not run yet' when none has finished."""
    parts = [f"{o} {int(c)}" for o, c in zip(OUTCOMES, counts_cell, strict=True) if c]
    return " · ".join(parts) if parts else "not run yet"


def _bare(v, digits: int) -> str:
    return value_text(None, v, digits)


def outcome_map_figure(xs, ys, codes, counts, line=None, x_name: str = "x", y_name: str = "y",
                       x_log: bool = False, y_log: bool = False, title: str = "Stability map",
                       x_label=_bare, y_label=_bare) -> go.Figure:
    """``codes[j, i]`` (OUTCOMES index, -1 = not run yet: left blank) at (xs[i], ys[j]); ``counts[j, i, k]`` seeds
    with OUTCOMES[k], shown on hover. ``line``: sweep.critical_line's CriticalLine, drawn through its endpoints.
    ``x_label(v, digits)``, ``y_label``: how a value reads on the ticks and on hover (``Axis.label``: a true/false
    axis's 0 and 1 read false and true); by default a number.

    A transparent marker sits on every cell centre: heatmaps send no click selection, markers do.
    """
    z = [[int(c) if c >= 0 else None for c in row] for row in np.asarray(codes)]  # None: a blank cell
    fig = go.Figure()
    fig.add_trace(go.Heatmap(x=list(xs), y=list(ys), z=z, zmin=-0.5, zmax=len(OUTCOMES) - 0.5,
                             colorscale=colorscale(), showscale=False, hoverinfo="skip", xgap=1, ygap=1,
                             name="outcome"))
    for name in OUTCOMES:  # legend entries for the four colours
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, showlegend=True,
                                 marker={"symbol": "square", "size": 12, "color": COLORS[name]}))
    gx, gy = np.meshgrid(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))
    text = [cell_text(counts[j][i]) for j in range(len(ys)) for i in range(len(xs))]
    where = [[x_label(x, 4), y_label(y, 4)] for y in ys for x in xs]  # the order of gx.ravel(), gy.ravel()
    fig.add_trace(go.Scatter(x=gx.ravel(), y=gy.ravel(), mode="markers", name="cells", showlegend=False,
                             text=text, customdata=where,
                             marker={"size": 18, "symbol": "square", "color": "rgba(0,0,0,0)"},
                             hovertemplate=f"{x_name} = %{{customdata[0]}}<br>{y_name} = %{{customdata[1]}}<br>"
                                           "%{text}<extra></extra>"))
    if line is not None:
        fig.add_trace(go.Scatter(x=list(line.xs), y=list(line.ys), mode="lines", name=line.label,
                                 line={"color": LINE_COLOR, "dash": "dash", "width": 2},
                                 hovertemplate=f"init_std = {line.value:.3g}: {line.label}<extra></extra>"))
    # A tick on every grid value, and no minor log ticks: the cells are the scale.
    fig.update_xaxes(type="log" if x_log else "linear", title_text=x_name, showgrid=False, automargin=True,
                     tickvals=list(xs), ticktext=[x_label(v, 3) for v in xs])
    fig.update_yaxes(type="log" if y_log else "linear", title_text=y_name, showgrid=False, automargin=True,
                     tickvals=list(ys), ticktext=[y_label(v, 3) for v in ys])
    fig.update_layout(**T.base_layout(title, height=HEIGHT))
    # Room for the axis titles and tick labels, and the legend clear of the x axis title.
    fig.update_layout(hovermode="closest", clickmode="event+select", margin={"l": 70, "r": 10, "t": 40, "b": 60},
                      legend={"y": -0.2})
    return fig


def _edges(values, log: bool) -> list[float]:
    """Cell boundaries around sorted grid ``values``: midpoints (geometric on a log axis), ends mirrored."""
    v = np.log10(values) if log else np.asarray(values, dtype=float)
    if len(v) == 1:
        mids = np.array([v[0] - 0.5, v[0] + 0.5])
    else:
        inner = (v[1:] + v[:-1]) / 2
        mids = np.concatenate([[v[0] - (inner[0] - v[0])], inner, [v[-1] + (v[-1] - inner[-1])]])
    return list(10 ** mids if log else mids)


def highlight(fig, sweep: SW.Sweep, x: float, y: float) -> None:
    """Outline the picked cell (a closed line, which log axes draw as well as linear ones)."""
    xs, ys = sorted(sweep.x.values), sorted(sweep.y.values)
    ex, ey = _edges(xs, sweep.x.scale == "log"), _edges(ys, sweep.y.scale == "log")
    i, j = xs.index(x), ys.index(y)
    x0, x1, y0, y1 = ex[i], ex[i + 1], ey[j], ey[j + 1]
    fig.add_trace(go.Scatter(x=[x0, x1, x1, x0, x0], y=[y0, y0, y1, y1, y0], mode="lines", name="picked cell",
                             showlegend=False, hoverinfo="skip", line={"color": T.LOSS, "width": 3}))


def picked(axis, value):
    """The value of ``axis`` equal to ``value`` (an axis value, or its text from a URL), else the axis's first."""
    try:
        return next(v for v in axis.values if float(v) == float(value))
    except (StopIteration, TypeError, ValueError):  # absent, another sweep's, or not a number
        return axis.values[0]


def sweep_figure(results, sweep: SW.Sweep, status: str, pick: tuple) -> go.Figure:
    """The map of ``results`` at the sweep's full size, the χ = 1 line and the ``pick`` (x, y) cell outlined."""
    xs, ys, codes, counts = SW.outcome_grid(results, sweep.x.values, sweep.y.values)
    line = SW.critical_line(sweep.x, sweep.y, sweep.base, sweep.width)
    fig = outcome_map_figure(xs, ys, codes, counts, line, sweep.x.name, sweep.y.name, sweep.x.scale == "log",
                             sweep.y.scale == "log", title=f"Stability map: {describe(sweep.base)} · {status}",
                             x_label=sweep.x.label, y_label=sweep.y.label)
    highlight(fig, sweep, picked(sweep.x, pick[0]), picked(sweep.y, pick[1]))
    return fig


def progress_text(job, done: int, alive: bool) -> str:
    """'3/25 cells, 4 s' while ``job`` runs; '25/25 cells in 12.3 s' (', cancelled') once it has ended."""
    total = len(job.sweep.cells)
    if alive:
        return f"{done}/{total} cells, {time.monotonic() - job.started:.0f} s"
    return f"{done}/{total} cells in {job.seconds or 0:.1f} s" + (", cancelled" if job.sweep.cancelled else "")


def live_state(job, pick: tuple) -> dict:
    """A sweep's map as the live map element shows it: the figure (Plotly JSON text), the cells done of the total,
    the progress text and whether the job still runs. ``alive`` is read before the results are copied, so a
    state that says ended holds every result."""
    alive = job.alive
    results = job.snapshot()
    text = progress_text(job, len(results), alive)
    return {"figure": sweep_figure(results, job.sweep, text, pick).to_json(), "done": len(results),
            "total": len(job.sweep.cells), "text": text, "alive": alive}
