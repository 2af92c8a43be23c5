"""The stability map's figure: one heatmap cell per (x, y), coloured by its majority outcome over seeds.

Plain data in (``sweep.outcome_grid``'s arrays, a ``CriticalLine`` or None), a Plotly figure out.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from training.sweep import OUTCOMES

from . import theme as T

COLORS = {"learned": "#2CA02C", "stuck": "#9CA3AF", "vanished": "#1F77B4", "exploded": "#D62728"}
LINE_COLOR = "#111827"


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


def outcome_map_figure(xs, ys, codes, counts, line=None, x_name: str = "x", y_name: str = "y",
                       x_log: bool = False, y_log: bool = False, title: str = "Stability map") -> go.Figure:
    """``codes[j, i]`` (OUTCOMES index, -1 = not run yet: left blank) at (xs[i], ys[j]); ``counts[j, i, k]`` seeds
    with OUTCOMES[k], shown on hover. ``line``: sweep.critical_line's CriticalLine, drawn through its endpoints.

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
    fig.add_trace(go.Scatter(x=gx.ravel(), y=gy.ravel(), mode="markers", name="cells", showlegend=False,
                             text=text, marker={"size": 18, "symbol": "square", "color": "rgba(0,0,0,0)"},
                             hovertemplate=f"{x_name} = %{{x:.4g}}<br>{y_name} = %{{y:.4g}}<br>%{{text}}"
                                           "<extra></extra>"))
    if line is not None:
        fig.add_trace(go.Scatter(x=list(line.xs), y=list(line.ys), mode="lines", name=line.label,
                                 line={"color": LINE_COLOR, "dash": "dash", "width": 2},
                                 hovertemplate=f"init_std = {line.value:.3g}: {line.label}<extra></extra>"))
    # A tick on every grid value, and no minor log ticks: the cells are the scale.
    fig.update_xaxes(type="log" if x_log else "linear", title_text=x_name, showgrid=False, automargin=True,
                     tickvals=list(xs), ticktext=[f"{v:.3g}" for v in xs])
    fig.update_yaxes(type="log" if y_log else "linear", title_text=y_name, showgrid=False, automargin=True,
                     tickvals=list(ys), ticktext=[f"{v:.3g}" for v in ys])
    fig.update_layout(**T.base_layout(title, height=480))
    # Room for the axis titles and tick labels, and the legend clear of the x axis title.
    fig.update_layout(hovermode="closest", clickmode="event+select", margin={"l": 70, "r": 10, "t": 40, "b": 60},
                      legend={"y": -0.2})
    return fig
