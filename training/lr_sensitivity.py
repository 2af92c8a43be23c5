"""Learning-rate sensitivity (Wortsman et al. 2023): how much a model's final loss depends on getting the lr right.

Over a grid of learning rates, LR sensitivity = mean over the grid of min(final loss, loss at init) − the best final
loss on the grid. A run that went non-finite counts as its loss at init, and no run counts as worse than that, so
one diverged lr cannot dominate the mean. 0 means every lr on the grid reaches the best loss; a large value means
only a narrow band of learning rates trains. Seeds are averaged per lr before the mean and the best are taken.

It reads a stability map whose one axis is ``lr`` (``python -m training sweep --x lr=1e-3:0.3:6 --y
qk_norm=false,true``): one curve, and one sensitivity, for each value of the other axis. Plain numpy on the map's
cells (``training.cells.CellResult`` or the rows of ``cells.to_frame``); nothing here trains.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from .axes import Axis

LR = "lr"


@dataclass(frozen=True)
class Curve:
    """Final loss against lr for one value of the map's other axis."""

    group: float  # the other axis's value (qk_norm: 0 or 1, which its Axis.label reads false or true)
    lrs: tuple[float, ...]  # ascending
    losses: tuple[float, ...]  # per lr: mean over seeds of min(final loss, loss at init); non-finite → loss at init
    sensitivity: float  # mean(losses) − min(losses)

    @property
    def best_lr(self) -> float:
        return self.lrs[int(np.argmin(self.losses))]


def capped(final_loss: float, initial_loss: float) -> float:
    """min(final loss, loss at init), a non-finite final loss counting as the loss at init."""
    return min(final_loss, initial_loss) if math.isfinite(final_loss) else initial_loss


def sensitivity(losses: Iterable[float]) -> float:
    """Mean over the lr grid − the best, of losses already capped at the loss at init."""
    v = np.asarray(list(losses), dtype=float)
    return float(v.mean() - v.min())


def lr_axis(meta: dict) -> str | None:
    """"x" or "y": which of the sweep's axes is the learning rate (None: neither, no curve to draw)."""
    return next((a for a in ("x", "y") if meta[a]["name"] == LR), None)


def curves(cells: Iterable, axis: str = "x") -> list[Curve]:
    """One Curve per value of the other axis, from a map's cells (CellResults or dicts with x, y, initial_loss and
    final_loss); ``axis`` names the lr axis."""
    other = "y" if axis == "x" else "x"
    table: dict[float, dict[float, list[float]]] = {}
    for c in cells:
        row = c if isinstance(c, dict) else asdict(c)
        per_lr = table.setdefault(float(row[other]), {})
        per_lr.setdefault(float(row[axis]), []).append(capped(float(row["final_loss"]), float(row["initial_loss"])))
    out = []
    for group in sorted(table):
        lrs = sorted(table[group])
        losses = [float(np.mean(table[group][lr])) for lr in lrs]
        out.append(Curve(group, tuple(lrs), tuple(losses), sensitivity(losses)))
    return out


def summary(cs: list[Curve], other: Axis) -> str:
    """One line, e.g. 'LR sensitivity: qk_norm=false 0.30 (best lr 0.00313), qk_norm=true 0.17 (best lr 0.00313)';
    ``other`` is the map's other axis, which says how its values read."""
    return "LR sensitivity: " + ", ".join(f"{other.name}={other.label(c.group)} {c.sensitivity:.3g} "
                                          f"(best lr {c.best_lr:.3g})" for c in cs)
