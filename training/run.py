"""One run's live record (``Run``), what a reader gets of it (``RunSnapshot``, ``Snapshot``), and the hooks a runner
calls as it records (``RunObserver``).

The training thread is the only writer of a run's history; every reader goes through ``snapshot()``, which copies
under the run's lock and returns plain numpy and Python values.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .config import Config
from .engine import StepRecord, Trainer
from .history import History

IDLE, RUNNING, PAUSED, FINISHED, EXPLODED, ERROR, STOPPED = (
    "idle", "running", "paused", "finished", "exploded", "error", "stopped")
LIVE = (IDLE, RUNNING, PAUSED)
MAX_PROBES = 512
MAX_EVENTS = 10_000  # events beyond this are dropped; the current lr and clipping never depend on them
COALESCE_S = 1.0  # live changes of one setting closer than this make one marker (see Run.add_change)
ID_BYTES = 12  # 96 random bits: an id is all it takes to read a live run through the server's routes

Clip = tuple[str, float, str]  # (mode, threshold, norm type), as Config spells them
LIVE_SETTINGS = ("lr", "clip", "z_loss", "weight_decay")  # what a running run can change (Runner.set_*)


class Snapshot(Protocol):
    """What a chart or panel may read of a run, live or stored: the one contract behind every run the UI draws.

    Two shapes implement it: ``RunSnapshot`` (a live or ended run of this process; ``Run.snapshot(history=False)``
    gives the same shape with an empty ``view``, for a status line) and ``components.saved_charts.StoredView`` (a
    run read back from the store). ``lr``, ``clip``, ``z_loss`` and ``weight_decay`` (LIVE_SETTINGS) are the
    settings the trainer uses now, live changes included: read them here, never by replaying ``config_change``
    events (events past MAX_EVENTS are dropped).
    """

    label: str
    config: Config  # as the run started
    columns: list[str]
    view: dict[str, np.ndarray]  # step (n,), value / lo / hi (n, len(columns)); {} in a status-only snapshot
    events: list[dict]
    probes: list[dict]
    lr: float
    clip: Clip
    z_loss: float
    weight_decay: float

    def series(self, column: str, which: str = "value") -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class RunSnapshot:
    """A copy of a ``Run`` (see ``Snapshot``)."""

    id: str
    label: str
    config: Config
    status: str
    error: str | None
    step: int  # steps taken
    steps_per_s: float
    device: str
    names: list[str]
    columns: list[str]
    view: dict[str, np.ndarray]
    events: list[dict]
    probes: list[dict]
    latest: StepRecord | None
    stuck_label: str
    extra: dict = field(default_factory=dict)
    lr: float | None = None  # None (a snapshot built by hand): the config's, updated by the events' changes
    clip: Clip | None = None
    z_loss: float | None = None
    weight_decay: float | None = None
    clipped_steps: int | None = None  # steps on which clipping changed the gradients; None: not counted
    changes: int = 0  # live setting changes so far, folded ones included: a chart drawn before one is out of date

    def __post_init__(self):
        if any(getattr(self, name) is None for name in LIVE_SETTINGS):
            for name, value in settings_after(self.config, self.events).items():
                if getattr(self, name) is None:
                    setattr(self, name, value)

    def series(self, column: str, which: str = "value") -> tuple[np.ndarray, np.ndarray]:
        return self.view["step"], self.view[which][:, self.columns.index(column)]


def start_settings(config: Config) -> dict:
    """The LIVE_SETTINGS a run starts with, by name (clip as one ``Clip``)."""
    return {"lr": config.lr, "clip": (config.clip, config.clip_threshold, config.clip_norm_type),
            "z_loss": config.z_loss, "weight_decay": config.weight_decay}


def settings_after(config: Config, events: list[dict]) -> dict:
    """The LIVE_SETTINGS after ``events``' live changes, by name: for a run read back from the store or built by
    hand. A live run tracks its own (``Run.settings``): events past MAX_EVENTS are dropped."""
    now = start_settings(config)
    for e in events:
        if e.get("kind") == "config_change" and e.get("field") in now:
            now[e["field"]] = tuple(e["new"]) if e["field"] == "clip" else e["new"]
    return now


class RunObserver:
    """Hooks a runner calls as each of its runs records (``Runner.observe``; the run store is one observer).

    The contract: every hook is called with the run's lock held, so an observer sees a run's steps and events in
    the order the run keeps them. A hook must be quick (append to a buffer, set a flag), must not raise, must not
    block on another thread, and must not call back into the run (its lock is not re-entrant) or into a UI.
    Whatever a hook keeps is the observer's to lock: other threads read it. ``replaces`` is the earlier live
    change an event folds into (see Run.add_change). The base class does nothing.
    """

    def on_step(self, run: Run, step: int, row: np.ndarray) -> None:
        """Training thread, once per step: may keep ``row`` (never written again) and read run.id; nothing else."""

    def on_event(self, run: Run, event: dict, replaces: dict | None = None) -> None:
        """Whichever thread records the event, once per event kept: may keep it; swap ``replaces`` if still held."""

    def on_end(self, run: Run) -> None:
        """The thread that ended the runner, once, after the last step: may read run.status and run.error."""


def _after(events: list[dict], step: int) -> list[dict]:
    """The newest events, those after ``step``: events are kept in step order, so the scan stops at the first
    older one rather than reading up to MAX_EVENTS under the run's lock."""
    i = len(events)
    while i and events[i - 1].get("step", -1) > step:
        i -= 1
    return events[i:]


def new_run_id(prefix: str = "r") -> str:
    """``prefix`` (``r`` for a run, ``m`` for a map's sweep) and 96 random bits in hex: unique across the processes
    that write one store (no counter that restarts with each process) and not guessable from another id."""
    return prefix + secrets.token_hex(ID_BYTES)


@dataclass(frozen=True)
class EndedTrainer:
    """What a run keeps of its trainer once it has ended: names and settings, no model, optimizer or data
    (those can be gigabytes; the history and events hold everything the charts and the store read)."""

    cfg: Config
    device: object
    names: list[str]
    columns: list[str]
    stuck_label: str
    step_idx: int

    @classmethod
    def of(cls, t: Trainer | EndedTrainer) -> EndedTrainer:
        return t if isinstance(t, EndedTrainer) else cls(t.cfg, t.device, list(t.names), list(t.columns),
                                                         t.stuck_label, t.step_idx)


class Run:
    """One trainer's live record; written by the runner thread, read by anyone through snapshot()."""

    def __init__(self, cfg: Config, device=None, label: str = "", recent: int = 2048, buckets: int = 2048):
        self.id = new_run_id()
        self.label = label or self.id[:7]  # "r" and 24 random bits: enough to tell a session's runs apart
        self.trainer: Trainer | EndedTrainer = Trainer(cfg, device)  # an EndedTrainer once the run has ended
        self.cfg = cfg
        self.columns = list(self.trainer.columns)
        self.device = str(self.trainer.device)
        self.history = History(self.columns, recent, buckets)
        self.events: list[dict] = []
        self.probes: list[dict] = []
        self.latest: StepRecord | None = None
        self.clipped_steps = 0  # any clip mode, across live changes: the status line's share
        self.status = IDLE
        self.error: str | None = None
        self.settings = start_settings(cfg)  # the LIVE_SETTINGS the trainer uses now, set by add_change
        self.observers: list[RunObserver] = []  # registered before the run starts (Runner.observe)
        self._lock = threading.Lock()
        self._times: deque[tuple[float, int]] = deque(maxlen=64)
        self._last_change: tuple[float, dict] | None = None  # (when, event): the newest live change, to fold into
        self.changes = 0  # live changes applied, a folded one too (its new value redraws the threshold line)

    def record(self, rec: StepRecord) -> None:
        row = rec.row()
        with self._lock:
            self.history.append(rec.step, row)
            for o in self.observers:
                o.on_step(self, rec.step, row)
            self.latest = rec
            self.clipped_steps += rec.clipped
            if rec.probe is not None:
                if len(self.probes) >= MAX_PROBES:  # thin the older half, keep the newest at full rate
                    half = MAX_PROBES // 2
                    self.probes = self.probes[:half:2] + self.probes[half:]
                self.probes.append(rec.probe)
            self._add_events(rec.events)
            self._times.append((time.perf_counter(), rec.step))
            if not rec.applied:
                self.status = EXPLODED
            elif rec.step + 1 >= self.cfg.steps:
                self.status = FINISHED

    def _add_events(self, events: list[dict]) -> None:
        kept = events[:max(MAX_EVENTS - len(self.events), 0)]
        self.events.extend(kept)
        for o in self.observers:
            for e in kept:
                o.on_event(self, e)

    def add_event(self, event: dict) -> None:
        with self._lock:
            self._add_events([event])

    def add_change(self, event: dict, message) -> None:
        """A live setting change (``event`` with field, old and new), which also sets that one of ``settings``.
        One following a change of the same field by less than COALESCE_S, with no event between, folds into it:
        three arrow-key presses on the learning-rate slider are one marker, from the first press's step and old
        value to the last one's new value. ``message(old, new)`` words it."""
        now = time.monotonic()
        with self._lock:
            self.changes += 1
            field = event["field"]
            self.settings[field] = tuple(event["new"]) if field == "clip" else event["new"]
            last = self._last_change
            if (last is not None and now - last[0] < COALESCE_S and self.events and self.events[-1] is last[1]
                    and last[1]["field"] == event["field"]):
                prev = last[1]
                event = {**prev, "new": event["new"], "message": message(prev["old"], event["new"])}
                self.events[-1] = event  # a new dict: snapshots already taken keep the one they copied
                for o in self.observers:
                    o.on_event(self, event, replaces=prev)
            else:
                self._add_events([event])
            self._last_change = (now, event)

    def set_status(self, status: str, error: str | None = None) -> None:
        with self._lock:
            self.status = status
            if error:
                self.error = error

    def release(self) -> None:
        """The run has ended (its final status is set): drop its model, optimizer, data and weight snapshot, keep
        history and events, and tell the observers."""
        with self._lock:
            self.trainer = EndedTrainer.of(self.trainer)
            for o in self.observers:
                o.on_end(self)

    def steps_per_s(self) -> float:
        t = self._times
        if len(t) < 2 or t[-1][0] <= t[0][0]:
            return 0.0
        return (t[-1][1] - t[0][1]) / (t[-1][0] - t[0][0])

    def snapshot(self, history: bool = True) -> RunSnapshot:
        """A copy of the run's state. ``history=False``: the status only (state, step, speed, latest record, events,
        the last evaluated probe) with an empty ``view``: what a status line needs, without copying ~3 MB of
        decimated history under the lock the training thread takes at every step."""
        with self._lock:
            if history:
                view, probes = self.history.view(), list(self.probes)
            else:
                view = {}
                probes = [next((p for p in reversed(self.probes) if p.get("test_accuracy") is not None),
                               self.probes[-1])] if self.probes else []
            return RunSnapshot(
                self.id, self.label, self.cfg, self.status, self.error, self.history.total,
                self.steps_per_s(), self.device, list(self.trainer.names), list(self.columns),
                view, list(self.events), probes, self.latest, self.trainer.stuck_label, **self.settings,
                clipped_steps=self.clipped_steps, changes=self.changes)

    def tail(self, after: int) -> RunSnapshot | None:
        """What the run recorded after step ``after``, as a snapshot: ``view`` holds only those rows (full
        resolution, lo = hi = value), ``events`` and ``probes`` only theirs, except that the run's first probe
        stays first (the time-step chart draws it beside the newest). None when some of those rows have already
        folded into buckets: a reader that far behind needs ``snapshot()``. Cheap under the lock: it copies the
        new rows only, for a chart that polls four times a second."""
        with self._lock:
            rows = self.history.since(after)
            if rows is None:
                return None
            steps, values = rows
            view = {"step": steps, "value": values, "lo": values, "hi": values}
            probes = [p for p in self.probes[:1] if p["step"] <= after] + [p for p in self.probes if p["step"] > after]
            return RunSnapshot(
                self.id, self.label, self.cfg, self.status, self.error, self.history.total,
                self.steps_per_s(), self.device, list(self.trainer.names), list(self.columns), view,
                _after(self.events, after), probes, self.latest,
                self.trainer.stuck_label, **self.settings, clipped_steps=self.clipped_steps, changes=self.changes)

    def held_bytes(self) -> int:
        """About what this run holds in memory once released: its history arrays, events and probes."""
        with self._lock:
            arrays = sum(v.nbytes for v in vars(self.history).values() if isinstance(v, np.ndarray))
            probes = sum(v.nbytes for p in self.probes for v in p.values() if isinstance(v, np.ndarray))
            return arrays + probes + 300 * (len(self.events) + len(self.probes))  # ~300 B a small dict
