"""The figure each live chart draws, by its key, from run snapshots.

The page and the live chart route (components/live_api.py) build every chart with these same
functions, so a chart refreshed through the route is the chart a rerun would have drawn.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import plotly.graph_objects as go

from training import sharpness as SH
from training.run import RunSnapshot

from . import chart_parts as P
from . import charts as C
from . import theme as T
from . import theory_panel, transformer_panel
from .chart_parts import RawFigure

OVERLAY_KEYS = ("chart_loss", "chart_grad")  # every run of the tab, plus earlier runs picked for overlay
DETAIL_KEYS = ("chart_heatmap", "chart_flow", "chart_weights", "chart_acts")  # one run
THEORY_KEYS = ("chart_theory", "chart_spectral", "chart_sharpness")  # one run: MLP or recurrent; sharpness when probed
TRANSFORMER_KEYS = transformer_panel.KEYS  # one run: a transformer's attention and output (the theory panel's)
KEYS = OVERLAY_KEYS + DETAIL_KEYS + THEORY_KEYS + TRANSFORMER_KEYS
# How each chart follows a training run (components/live_rows.py): the x axis of these is the step, so the page
# appends the rows after the last step it holds; these draw one step (the newest record, the newest probe) and
# are sent whole when a newer one exists; the theory and transformer charts are redrawn whole on their period.
STREAM_KEYS = ("chart_loss", "chart_grad", "chart_heatmap", "chart_weights")
NOW_KEYS = ("chart_flow", "chart_acts")


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
    return P.figure([], layout)


def figure(key: str, snaps: Sequence[RunSnapshot]) -> go.Figure | RawFigure:
    """The figure of chart ``key``: overlay charts take every snapshot, the others the first one. Each trace gets
    a ``uid`` from its name, axes and type, the same in a whole figure and in the rows that extend it (Plotly's
    JSON leaves uids out: the page gives them back by the same rule, components/live_stream.js ``hold``)."""
    fig = _figure(key, snaps)
    seen: dict[str, int] = {}
    for t in fig.data:  # Plotly traces or, under chart_parts.raw_figures, dicts: both read and set by key
        get = t.get if isinstance(t, dict) else t.__getitem__
        base = "|".join(str(get(k)) for k in ("name", "xaxis", "yaxis", "type"))
        seen[base] = seen.get(base, -1) + 1  # unnamed traces (a band's two edges) are told apart by their order
        t["uid"] = trace_uid(base, seen[base])
    return fig


def trace_uid(base: str, n: int) -> str:
    """A trace's uid: FNV-1a (32 bits) of ``base`` (its name, axes and type) in UTF-8, and ``n``, its count among
    traces alike; letters, digits and '-' only, as Plotly puts uids in CSS selectors (live_stream.js, the same)."""
    h = 0x811C9DC5
    for b in base.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return f"u{h:08x}-{n}"


def newest_step(key: str, snap: RunSnapshot) -> int:
    """The newest step chart ``key`` draws of ``snap`` (-1: none): where the rows the page asks for start."""
    if key == "chart_flow":
        return snap.latest.step if snap.latest is not None else -1
    if key == "chart_acts":
        return int(snap.probes[-1]["step"]) if snap.probes else -1
    steps = snap.view.get("step", ())
    return int(steps[-1]) if len(steps) else -1


def view_of(key: str, snaps: Sequence[RunSnapshot]) -> str:
    """What a chart's rows extend: its key, its runs (ids and labels, A/B or an earlier run's) and the number of
    live changes each has had. Rows after another view's figure would extend the wrong one (a new run, a
    compare, a threshold line moved), so the route then answers with the whole figure."""
    parts = [key] + [f"{s.id}:{s.label}:{getattr(s, 'changes', 0)}" for s in snaps]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


def cursor(key: str, snaps: Sequence[RunSnapshot]) -> dict:
    """The page's cursor for a figure of ``snaps``: the newest step it holds of each run, and its view."""
    return {"after": [newest_step(key, s) for s in snaps], "view": view_of(key, snaps)}


def _figure(key: str, snaps: Sequence[RunSnapshot]) -> go.Figure:
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
