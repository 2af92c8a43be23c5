"""The one loop that steps a trainer synchronously to its end: the CLI's ``run`` (to a file or into the store)
and every cell of a stability map. The dashboard's runner thread steps its runs in lockstep instead."""

from __future__ import annotations

from collections.abc import Iterator

from .engine import StepRecord, Trainer


def steps(trainer: Trainer, n: int) -> Iterator[StepRecord]:
    """Up to ``n`` steps, each record as it is made; ends after the first step not applied (a non-finite loss or
    gradient, which the engine rolled back: the run has exploded)."""
    for _ in range(n):
        rec = trainer.step()
        yield rec
        if not rec.applied:
            return
