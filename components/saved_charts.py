"""Charts of stored runs: the live charts (components/charts.py) drawn from ``Store.series`` dicts.

A stored run has no RunSnapshot, so ``stored_view`` builds the fields of the one snapshot contract
(``training.run.Snapshot``) that the loss and gradient-norm charts read, from plain data. The
series are already thinned by the store (the last value of each bucket plus its min and max), so the charts'
envelope keeps a one-step spike, and a non-finite value still becomes a "✕ non-finite" marker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from training.config import Config, ConfigError, from_dict
from training.run import Clip, settings_after

from . import charts as C

COLUMNS = ("loss", "grad_norm_pre_clip", "grad_norm_post_clip")  # what the overlay charts draw


@dataclass(frozen=True)
class StoredView:
    """A stored run as a ``training.run.Snapshot``: what loss_figure and grad_norm_figure need."""

    label: str
    config: Config
    columns: list[str]
    view: dict[str, np.ndarray]  # step (n,), value/lo/hi (n, len(columns))
    lr: float  # as the run ended: its config's, updated by its stored live changes (run.LIVE_SETTINGS)
    clip: Clip
    z_loss: float
    weight_decay: float
    events: list[dict] = field(default_factory=list)
    probes: list[dict] = field(default_factory=list)  # not stored: no test-accuracy line

    def series(self, column: str, which: str = "value") -> tuple[np.ndarray, np.ndarray]:
        return self.view["step"], self.view[which][:, self.columns.index(column)]


def stored_config(d: Mapping) -> Config:
    """A stored config dict as a Config; one written by an older version that no longer validates falls back to
    the defaults (the charts only read its clipping, and the live changes in the events override that)."""
    try:
        return from_dict(d)
    except (ConfigError, TypeError, ValueError):
        return Config()


def stored_view(label: str, config: Mapping, series: Mapping[str, Mapping[str, np.ndarray]],
                events: Sequence[dict] = ()) -> StoredView:
    """One run from ``{column: {step, value, lo, hi}}`` (one ``Store.series`` entry per column, same steps).

    A column whose steps differ from the first one's (thinned differently) is aligned on the first one's steps,
    missing steps as NaN gaps.
    """
    cols = list(series)
    steps = np.asarray(series[cols[0]]["step"]) if cols else np.zeros(0, dtype=np.int64)
    view = {"step": steps}
    for which in ("value", "lo", "hi"):
        out = np.full((len(steps), len(cols)), np.nan)
        for j, col in enumerate(cols):
            s = series[col]
            if np.array_equal(np.asarray(s["step"]), steps):
                out[:, j] = s[which]
            else:
                pos = {int(k): i for i, k in enumerate(s["step"])}
                for i, k in enumerate(steps):
                    if int(k) in pos:
                        out[i, j] = s[which][pos[int(k)]]
        view[which] = out
    cfg = stored_config(config)
    return StoredView(label, cfg, cols, view, events=list(events), **settings_after(cfg, list(events)))


def loss_overlay(views: Sequence[StoredView]) -> go.Figure:
    """Loss over steps of several stored runs (log y, one colour each, non-finite as markers)."""
    fig = C.loss_figure(views)
    fig.update_layout(title_text="Loss")
    return fig


def grad_norm_overlay(views: Sequence[StoredView]) -> go.Figure:
    """Gradient norm before and after clipping of several stored runs, with each run's clip threshold."""
    return C.grad_norm_figure(views)
