"""A step's row: its columns (``Trainer.columns``), its record, and where each number sits in it and in the
step's one transfer to the host.

Computed once per trainer (the transfer's again when the clip mode changes live), so that a new metric is a new
entry here and its use, not a shift of every position after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

SCALAR_COLUMNS = ["loss", "lr", "grad_norm_pre_clip", "grad_norm_post_clip", "clipped"]
# After the scalars: the held-out set's loss and accuracy on the steps that evaluated it, NaN on the others. Carried
# in the row so that the history, the store and every export have them without a second record.
TEST_COLUMNS = ["test_loss", "test_accuracy"]
HEAD = len(SCALAR_COLUMNS) + len(TEST_COLUMNS)  # the per-parameter columns start here
PER_PARAM = ["grad_norm", "weight_norm", "update_ratio"]  # then n columns of each, "<group>/<parameter name>"


def row_slices(n: int) -> dict[str, slice]:
    """Where each group of ``PER_PARAM`` columns sits in a row of n parameter tensors."""
    return {g: slice(HEAD + i * n, HEAD + (i + 1) * n) for i, g in enumerate(PER_PARAM)}


@dataclass(frozen=True)
class Sent:
    """Positions in a step's one transfer: the loss, a norm clip's total and coefficient or agc's count of scaled
    units, n each of ‖g‖ and ‖w‖, n of ‖g‖ after a value or agc clip, n of the measured ‖Δw‖ (optimizers other
    than plain SGD). Absent parts: None."""

    n: int
    total: int | None
    coef: int | None
    grads: slice
    weights: slice
    clamped: slice | None
    moved: slice | None
    units: int | None = None

    @classmethod
    def of(cls, n: int, clip: str, measured_update: bool) -> Sent:
        at = {"norm": 3, "agc": 2}.get(clip, 1)  # after the loss [, total, coefficient | , scaled units]
        parts = [slice(at + i * n, at + (i + 1) * n) for i in range(4)]
        clamped = parts.pop(2) if clip in ("value", "agc") else None
        return cls(n, 1 if clip == "norm" else None, 2 if clip == "norm" else None, parts[0], parts[1], clamped,
                   parts[2] if measured_update else None, 1 if clip == "agc" else None)


class Host(NamedTuple):
    """A step's transferred numbers (``values``, laid out as ``Sent``) and what the row takes from them."""

    values: list[float]
    loss: float
    pre: float  # global L2 norm of the gradients before clipping
    post: float  # ... after
    coef: float  # a norm clip's coefficient; 1.0 otherwise
    clipped: bool  # the clip changed the gradients: post < pre, or for agc any unit scaled


@dataclass
class StepRecord:
    step: int
    loss: float
    lr: float
    grad_norm_pre_clip: float
    grad_norm_post_clip: float
    clipped: bool
    grad_norms: np.ndarray  # per parameter, forward order
    weight_norms: np.ndarray
    # ‖Δw‖/‖w‖; NaN where undefined (‖w‖ = 0) or not applied (a non-finite step). Plain SGD: lr·‖g‖/‖w‖, the update
    # it applies, which the stored float32 weights follow to ~1e-5 unless it is below their resolution (~1e-7 ‖w‖).
    update_ratios: np.ndarray
    applied: bool = True  # False: the loss or a gradient element was non-finite, and the update was not applied
    probe: dict | None = None
    events: list[dict] = field(default_factory=list)
    flat: np.ndarray | None = field(default=None, repr=False)  # the row, when the arrays above are views of it
    clip_norm: float | None = None  # the norm a norm clip compared with its threshold (its own norm type); not a column

    def row(self) -> np.ndarray:
        """Flat row in ``Trainer.columns`` order."""
        if self.flat is not None:
            return self.flat
        head = [self.loss, self.lr, self.grad_norm_pre_clip, self.grad_norm_post_clip, float(self.clipped)]
        return np.concatenate([head, held_out(self.probe), self.grad_norms, self.weight_norms, self.update_ratios])


def clipped_share(clipped_steps: int, steps: int) -> float:
    """The share of steps on which clipping changed the gradients; NaN before any step."""
    return clipped_steps / steps if steps > 0 else math.nan


def clipped_words(share: float) -> str:
    """The share in words, as the status line and the CLI say it: 'clipped on 12.5% of steps'."""
    return f"clipped on {share:.1%} of steps" if math.isfinite(share) else "clipped on – of steps"


def held_out(probe: dict | None) -> tuple[float, float]:
    """(test loss, test accuracy) of a probe that evaluated the held-out set, else (NaN, NaN)."""
    if probe is None or probe["test_loss"] is None:
        return math.nan, math.nan
    return probe["test_loss"], probe["test_accuracy"]
