"""The learning-rate sensitivity chart: final loss against lr, one line per value of a map's other axis.

Plain data in (``training.lr_sensitivity.Curve``), a Plotly figure out; the map page draws it under a map with an
lr axis, and the legend carries each line's LR sensitivity (Wortsman et al. 2023)."""

from __future__ import annotations

import plotly.graph_objects as go

from training import lr_sensitivity as LRS
from training.axes import Axis

from . import chart_parts as CP
from . import theme as T


def lr_sensitivity_figure(curves: list[LRS.Curve], other: Axis) -> go.Figure:
    """Needs at least one Curve; ``other`` is the axis the lines differ in, each named by its value as the axis
    reads it (qk_norm = false, qk_norm = true)."""
    data = [CP.scatter(list(c.lrs), list(c.losses), mode="lines+markers",
                       name=f"{other.name} = {other.label(c.group)}: LR sensitivity {c.sensitivity:.3g}")
            for c in curves]
    layout = {**T.base_layout("Final loss against learning rate"),
              "xaxis": CP.xaxis(type="log", title={"text": "learning rate"}),
              "yaxis": CP.yaxis("final loss (capped at the loss at init)")}
    return CP.figure(data, layout)
