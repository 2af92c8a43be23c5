"""Colours and figure defaults shared by every chart, so a quantity looks the same wherever it appears."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from plotly.colors import sample_colorscale, sequential

PRE_CLIP = "#D62728"  # the raw gradient: red, the thing that explodes
POST_CLIP = "#1F77B4"  # what the optimizer actually applies
THRESHOLD = "#374151"
LOSS = "#111827"
ACCURACY = "#2CA02C"
NON_FINITE = "#B91C1C"
ZERO = "#6B7280"
REFERENCE = "#6B7280"
# Run A, run B, then overlaid earlier runs; chosen apart from the pre/post-clip red and blue.
RUN_COLORS = ("#1B9E77", "#D95F02", "#7570B3", "#E7298A", "#66A61E", "#A6761D", "#666666")
EVENT_COLORS = {"explosion": "#B91C1C", "config_change": "#4B5563", "spike": "#D97706", "error": "#7F1D1D"}
EVENT_DASH = {"explosion": "solid", "config_change": "dash", "spike": "dot", "error": "solid"}
# Black (quiet) to yellow (exploding). Its first stop, #000004, is one of the colours Streamlit's frontend
# swaps for theme colours (#000001-#000010), so it is replaced by plain black.
HEATMAP_SCALE = ["#000000", *sequential.Inferno[1:]]
CHART_HEIGHT = 310


# Dark mode: the figures are built once, in light colours (the live chart route does not know the viewer's theme);
# the page swaps these where the active theme is dark (components/plot.py), the map page on the server. Only
# the page's ink and paper change; the data colours read on both.
DARK_SWAPS = {
    "white": "rgba(0,0,0,0)",  # paper and plot: the page's own background shows through
    "#111827": "#F3F4F6",  # loss line, titles, the map's chi = 1 line
    "#374151": "#D1D5DB",  # axis text, threshold
    "#4b5563": "#9CA3AF",  # live-change markers
    "#6b7280": "#9CA3AF",  # zeros, references
    "#ebf0f8": "rgba(250,250,250,0.12)",  # grid
    "#d1d5db": "rgba(250,250,250,0.3)",  # axis lines
    "rgba(255,255,255,0.75)": "rgba(14,17,23,0.75)",  # legend box over the data
}


def dark(value):
    """``value`` (a figure as plain dicts and lists) with every colour of DARK_SWAPS swapped, as the page does."""
    if isinstance(value, dict):
        return {k: dark(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [dark(v) for v in value]
    return DARK_SWAPS.get(value.lower(), value) if isinstance(value, str) else value


def run_color(i: int) -> str:
    return RUN_COLORS[i % len(RUN_COLORS)]


def layer_colors(n: int) -> list[str]:
    """One colour per layer, input (dark purple) to output (green); stops short of Viridis' pale yellow."""
    return list(_layer_colors(n))


@lru_cache(maxsize=64)
def _layer_colors(n: int) -> tuple[str, ...]:
    # Cached: sampling the colour scale costs ~1 ms, and three charts ask for the same colours every refresh.
    if n <= 1:
        return tuple(sample_colorscale("Viridis", [0.0]))
    return tuple(sample_colorscale("Viridis", list(np.linspace(0.0, 0.82, n))))


def base_layout(title: str, height: int = CHART_HEIGHT) -> dict:
    """Title top left, legend in one row under the plot (long legends never cover the title or the data)."""
    return {
        "title": {"text": title, "x": 0.0, "xanchor": "left", "y": 0.98, "yanchor": "top", "yref": "container",
                  "font": {"size": 14, "color": "#111827"}},
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "legend": {"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.12, "yanchor": "top",
                   "font": {"size": 11}},
        "hovermode": "x unified",
        "uirevision": "keep",  # zoom and hidden traces survive the live refresh
        # plotly_white's look, without its template: building a named template costs ~10 ms a figure, every refresh
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"family": "Source Sans Pro, sans-serif", "size": 12, "color": "#374151"},
    }


AXIS = {"gridcolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "linecolor": "#D1D5DB", "showline": True,
        "automargin": True}  # room for tick labels such as 10²⁵ and layer names


PERCENT_AXIS = {"range": [0, 1.02], "tickmode": "linear", "tick0": 0, "dtick": 0.25, "tickformat": ".0%",
                "showgrid": False}
