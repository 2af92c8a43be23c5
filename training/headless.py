"""Training one config headless, start to end, on this thread: to rows for a file, or into the run store.

Both step the trainer through the one loop (``training/loop.py``) with a progress bar fed by time.
"""

from __future__ import annotations

import sys
import time
import traceback

import numpy as np
from tqdm import tqdm

from . import loop
from .config import Config
from .engine import StepRecord, Trainer
from .runner import ERROR, EXPLODED, FINISHED, LIVE, RUNNING, STOPPED, Run
from .store import Store

BAR_PERIOD_S = 0.2  # the progress bar's text is redrawn at most this often: formatting it costs ~15 µs


class _Progress:
    """A tqdm bar fed by time, not by step: a bare ``update(1)`` and ``set_postfix`` per step cost ~2% of a step."""

    def __init__(self, total: int, unit: str = "step"):
        self.bar = tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=BAR_PERIOD_S)
        self.next = 0.0

    def show(self, done: int, rec) -> None:
        """``done`` steps taken, ``rec`` the latest StepRecord (or None)."""
        self.bar.update(done - self.bar.n)
        if rec is not None:
            self.bar.set_postfix(loss=f"{rec.loss:.3g}", grad_norm=f"{rec.grad_norm_pre_clip:.3g}", refresh=False)
        self.next = time.perf_counter() + BAR_PERIOD_S

    def close(self) -> None:
        self.bar.close()


def _train(trainer: Trainer, steps: int, record, progress: bool) -> StepRecord | None:
    """Step ``trainer`` through the one loop (``training/loop.py``), handing each record to ``record``; return
    the last record (None if no step ran). The bar follows by time."""
    bar = _Progress(steps) if progress else None
    rec, done = None, 0
    try:
        for rec in loop.steps(trainer, steps):
            record(rec)
            done += 1
            if bar is not None and time.perf_counter() >= bar.next:
                bar.show(done, rec)
    finally:
        if bar is not None:
            bar.show(done, rec)
            bar.close()
    return rec


def train_rows(cfg: Config, progress: bool = True):
    """Train synchronously; return (trainer, rows, events, status), ``rows`` one per step: step, then the row.

    The table has no activation statistics, so the trainer skips them (its probe steps only evaluate the test
    set, on the same schedule as in the dashboard): the numbers written are those of the same run anywhere else.
    """
    trainer = Trainer(cfg)
    trainer.activation_probes = False
    rows, events = [], []

    def keep(rec: StepRecord) -> None:
        rows.append(rec.row())
        events.extend(rec.events)

    last = _train(trainer, cfg.steps, keep, progress)
    status = EXPLODED if last is not None and not last.applied else FINISHED
    table = np.empty((len(rows), 1 + len(trainer.columns)))
    table[:, 0] = np.arange(len(rows))
    if rows:
        table[:, 1:] = np.vstack(rows)
    return trainer, table, events, status


def train_into_store(cfg: Config, store: Store, label: str, progress: bool = True):
    """Train synchronously, the store saving every step from its writer thread; return (run id, status, steps,
    clipped steps).

    The run's record says how it ended as a dashboard run's would: finished, exploded, stopped (Ctrl-C: the
    steps so far are saved) or error (the exception, in one line, and its traceback as an event)."""
    run = Run(cfg, label=label)
    run.trainer.activation_probes = False  # the store keeps no activation statistics
    store.attach_run(run)
    run.set_status(RUNNING)
    try:
        _train(run.trainer, cfg.steps, run.record, progress)
    except Exception as exc:
        msg = f"{type(exc).__name__}: {exc}"
        run.set_status(ERROR, msg)
        run.add_event({"step": run.trainer.step_idx, "kind": "error", "message": msg,
                       "traceback": traceback.format_exc(limit=8)})
        print(f"error: {msg}", file=sys.stderr)
    finally:
        if run.status in LIVE:
            run.set_status(STOPPED)
        run.release()  # tells the store the run has ended
        store.close()
    snap = run.snapshot(history=False)
    return run.id, snap.status, snap.step, snap.clipped_steps
