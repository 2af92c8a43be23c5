"""The figure each live chart draws, by its key, from run snapshots.

The page and the live chart route (components/live_api.py) build every chart with these same
functions, so a chart refreshed through the route is the chart a rerun would have drawn.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import plotly.graph_objects as go

from training import sharpness as SH
from training.run import RunSnapshot

from . import charts as C
from . import theme as T
from . import theory_panel, transformer_panel

OVERLAY_KEYS = ("chart_loss", "chart_grad")  # every run of the tab, plus earlier runs picked for overlay
DETAIL_KEYS = ("chart_heatmap", "chart_flow", "chart_weights", "chart_acts")  # one run
THEORY_KEYS = ("chart_theory", "chart_spectral", "chart_sharpness")  # one run: MLP or recurrent; sharpness when probed
TRANSFORMER_KEYS = transformer_panel.KEYS  # one run: a transformer's attention and output (the theory panel's)
KEYS = OVERLAY_KEYS + DETAIL_KEYS + THEORY_KEYS + TRANSFORMER_KEYS


def short(run_id: str) -> str:
    """A run id short enough for a legend: its first 6 hex digits (or, for ids saved before ids were all random,
    the counter before the dash)."""
    return run_id.split("-")[0] if "-" in run_id else run_id[:7]


def as_overlay(snap: RunSnapshot) -> RunSnapshot:
    """An earlier run drawn over the current ones, labelled with its run id so legends stay unambiguous."""
    return dataclasses.replace(snap, label=f"{short(snap.id)} {snap.label}")


def waiting(title: str) -> go.Figure:
    """A chart with nothing to draw yet (no step, or no probe): its title and a note, at its usual height."""
    layout = {**T.base_layout(title), "xaxis": {"visible": False}, "yaxis": {"visible": False},
              "annotations": [{"text": "waiting for the first measurement", "showarrow": False,
                               "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "font": {"color": T.ZERO}}]}
    return go.Figure(layout=layout)


def figure(key: str, snaps: Sequence[RunSnapshot]) -> go.Figure:
    """The figure of chart ``key``: overlay charts take every snapshot, the others the first one."""
    if key == "chart_loss":
        return C.loss_figure(snaps)
    if key == "chart_grad":
        return C.grad_norm_figure(snaps)
    snap = snaps[0]
    if key == "chart_heatmap":
        return C.layer_heatmap(snap)
    if key == "chart_flow":
        rec = snap.latest
        if rec is None:
            return waiting("Gradient flow now, input → output")
        return C.gradient_flow_figure(snap.names, {snap.label: rec.grad_norms}, rec.step)
    if key == "chart_weights":
        return C.weights_updates_figure(snap)
    if key == "chart_acts":
        return C.probe_figure(snap.probes[-1], snap.probes[0]) if snap.probes else waiting("Activations per layer")
    if key == "chart_theory":
        return theory_panel.mlp_figure(snap)
    if key == "chart_spectral":
        return theory_panel.spectral(snap)
    if key == "chart_sharpness":
        probed = SH.edge_column(snap.config.optimizer) in snap.columns
        return theory_panel.sharpness(snap) if probed else waiting("Sharpness against the edge of stability")
    if key in TRANSFORMER_KEYS:
        return transformer_panel.figure(key, snap)
    raise KeyError(f"no live chart {key!r}; known: {', '.join(KEYS)}")
