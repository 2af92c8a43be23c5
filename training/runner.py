"""The background runner: a thread that steps one or more trainers (``training/run.py``) in lockstep.

The thread is the only writer of its runs; every reader goes through ``snapshot()``, which copies under the run's
lock and returns plain numpy and Python values, and observers (the run store) get each step and event as it is
recorded. Commands (pause, step, stop, live changes of lr, clipping, z-loss and weight decay) are queued under a
condition variable and take effect at the next step; stop is an Event checked between steps, so it lands within one
step's time.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass

from . import registry as R
from .config import Config, ConfigError, why_not_live
from .run import (  # noqa: F401 (re-exported: the run's names were defined here before)
    ERROR,
    EXPLODED,
    FINISHED,
    LIVE,
    PAUSED,
    RUNNING,
    STOPPED,
    EndedTrainer,
    Run,
    RunObserver,
    RunSnapshot,
    new_run_id,
)

SPEED_RANGE = (0.1, 1000.0)  # steps per second a throttled run may be set to; None is "as fast as it goes"

_runners: weakref.WeakSet[Runner] = weakref.WeakSet()
_helpers: weakref.WeakSet[threading.Thread] = weakref.WeakSet()  # the store's writer, the manager's watchdog


def track_thread(thread: threading.Thread) -> threading.Thread:
    """Count a helper thread in ``live_threads()``, so the end-of-suite check catches it too."""
    _helpers.add(thread)
    return thread


def live_threads() -> list[threading.Thread]:
    """Training and helper threads still alive in this process (the test suite asserts none at the end)."""
    training = [r._thread for r in list(_runners) if r._thread is not None and r._thread.is_alive()]
    return training + [t for t in list(_helpers) if t.is_alive()]


@dataclass(frozen=True)
class Pause:
    """Pause (True) or resume (False) every run."""
    paused: bool


@dataclass(frozen=True)
class SetSpeed:
    steps_per_s: float | None  # None: as fast as it goes


@dataclass(frozen=True)
class SetLr:
    lr: float
    runs: list[int] | None = None  # indices into Runner.runs; None: every run


@dataclass(frozen=True)
class SetClip:
    mode: str
    threshold: float | None = None  # None: keep the trainer's
    norm_type: str | None = None
    runs: list[int] | None = None


@dataclass(frozen=True)
class SetZLoss:
    z_loss: float
    runs: list[int] | None = None


@dataclass(frozen=True)
class SetWeightDecay:
    weight_decay: float
    runs: list[int] | None = None


Command = Pause | SetSpeed | SetLr | SetClip | SetZLoss | SetWeightDecay
Change = SetLr | SetClip | SetZLoss | SetWeightDecay


class Runner:
    """Steps its runs in lockstep on one thread; each run owns its data stream, so it equals the same run alone."""

    def __init__(self, configs: Config | list[Config], device=None, labels: list[str] | None = None,
                 recent: int = 2048, buckets: int = 2048, steps_per_s: float | None = None):
        # The throttle: at most one step every ``_interval`` seconds, the next not before ``_due`` (monotonic).
        # 0.0 is "max": the loop then tests one float per step and never waits.
        self._interval = 1.0 / check_speed(steps_per_s) if steps_per_s is not None else 0.0
        self._due = 0.0
        configs = [configs] if isinstance(configs, Config) else list(configs)
        labels = labels or [""] * len(configs)
        self.runs = [Run(c, device, lab, recent, buckets) for c, lab in zip(configs, labels, strict=True)]
        self._cv = threading.Condition()
        self._commands: list[Command] = []
        self._paused = False
        self._pending_steps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _runners.add(self)

    # Operations, callable from any thread.
    def observe(self, observer: RunObserver) -> None:
        """Call ``observer``'s hooks for every run of this runner (see RunObserver); before start(), so no step
        is missed."""
        for r in self.runs:
            r.observers.append(observer)

    def start(self, paused: bool = False) -> None:
        if self._thread is not None:
            raise RuntimeError("this runner was already started; make a new one to train again")
        self._paused = paused
        for r in self.runs:
            r.set_status(PAUSED if paused else RUNNING)
        self._thread = threading.Thread(target=self._loop, name=f"train-{self.id}", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._command(Pause(True))

    def resume(self) -> None:
        self._command(Pause(False))

    def step_once(self, n: int = 1) -> None:
        """While paused, take ``n`` more steps."""
        with self._cv:
            self._pending_steps += n
            self._cv.notify_all()

    def set_lr(self, lr: float, runs: list[int] | None = None) -> None:
        Config(lr=lr)  # validates the value, raising ConfigError with the allowed range
        self._command(SetLr(lr, runs))

    def set_clip(self, mode: str, threshold: float | None = None, norm_type: str | None = None,
                 runs: list[int] | None = None) -> None:
        Config(clip=mode, clip_threshold=threshold if threshold is not None else 1.0,
               clip_norm_type=norm_type or "2")  # validates
        self._command(SetClip(mode, threshold, norm_type, runs))

    def set_z_loss(self, z_loss: float, runs: list[int] | None = None) -> None:
        """The transformer's z-loss coefficient from the next step on: it enters the objective only, so the loss
        column stays comparable across the change."""
        Config(z_loss=z_loss)  # validates
        self._check_applies("z_loss", z_loss, runs)
        self._command(SetZLoss(z_loss, runs))

    def set_weight_decay(self, weight_decay: float, runs: list[int] | None = None) -> None:
        """AdamW's decoupled weight decay from the next step on, its moments kept."""
        Config(weight_decay=weight_decay)  # validates
        self._check_applies("weight_decay", weight_decay, runs)
        self._command(SetWeightDecay(weight_decay, runs))

    def _check_applies(self, field: str, value, runs: list[int] | None) -> None:
        for r in self._targets(runs):
            if (why := why_not_live(r.cfg, field)) is not None:
                raise ConfigError(field, value, why)

    def set_speed(self, steps_per_s: float | None) -> None:
        """Take at most ``steps_per_s`` steps a second from the next step on (None: as fast as it goes), so an
        explosion can be watched as it develops; a single step while paused is never delayed."""
        if steps_per_s is not None:
            check_speed(steps_per_s)
        self._command(SetSpeed(steps_per_s))

    @property
    def steps_per_s(self) -> float | None:
        """The throttle now (None: not throttled)."""
        return 1.0 / self._interval if self._interval else None

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop after the current step; True when the thread has ended within ``timeout`` seconds."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is None:
            for r in self.runs:
                if r.status in LIVE:
                    r.set_status(STOPPED)
                r.release()
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.alive

    @property
    def id(self) -> str:
        """The runner's id: its first run's, which ``?run=`` and the manager key it by (a compare pair by run A)."""
        return self.runs[0].id

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def paused(self) -> bool:
        return self._paused

    def snapshot(self, i: int = 0, history: bool = True) -> RunSnapshot:
        return self.runs[i].snapshot(history)

    def _targets(self, runs: list[int] | None) -> list[Run]:
        return [self.runs[i] for i in (runs if runs is not None else range(len(self.runs)))]

    def _command(self, cmd: Command) -> None:
        with self._cv:
            self._commands.append(cmd)
            self._cv.notify_all()

    # The thread.
    def _apply_commands(self) -> None:
        for cmd in self._commands:
            if isinstance(cmd, Pause):
                self._paused = cmd.paused
                for r in self.runs:
                    if r.status in (RUNNING, PAUSED):
                        r.set_status(PAUSED if self._paused else RUNNING)
            elif isinstance(cmd, SetSpeed):
                interval = 1.0 / cmd.steps_per_s if cmd.steps_per_s is not None else 0.0
                self._due += interval - self._interval  # the step already waited for moves with the new pace
                self._interval = interval
            else:
                for r in self._targets(cmd.runs):
                    if r.status in LIVE:
                        _apply_change(r, cmd)
        self._commands.clear()

    def _next(self) -> bool:
        """Block while paused; False when the thread should end."""
        with self._cv:
            while True:
                self._apply_commands()
                if self._stop.is_set():
                    return False
                if not self._paused:
                    if not self._interval:
                        return True
                    wait = self._due - time.monotonic()
                    if wait <= 0:
                        self._due = time.monotonic() + self._interval
                        return True
                    self._cv.wait(wait)  # a command or stop wakes it early
                    continue
                if self._pending_steps > 0:
                    self._pending_steps -= 1
                    return True
                self._cv.wait(0.25)

    def _loop(self) -> None:
        current: Run | None = None
        try:
            while self._next():
                active = [r for r in self.runs if r.status in (RUNNING, PAUSED)]
                if not active:
                    break
                # Each run draws from its own batch stream (seeded by its config), never a neighbour's: runs with
                # the same seed and data settings still see identical batches, and a run that ends early (A exploding)
                # does not shift the stream of the others. Sampling a batch costs ~1% of a step.
                for current in active:
                    current.record(current.trainer.step())
                current = None
        except Exception as exc:  # never lost: the run says what went wrong and the thread ends cleanly
            msg = f"{type(exc).__name__}: {exc}"
            for r in ([current] if current else self.runs):
                if r.status in LIVE:
                    r.set_status(ERROR, msg)
                    r.add_event({"step": r.trainer.step_idx, "kind": "error", "message": msg,
                                 "traceback": traceback.format_exc(limit=8)})
        finally:
            for r in self.runs:
                if r.status in LIVE:
                    r.set_status(STOPPED)
                r.release()
            _trim_heap()


def _apply_change(r: Run, cmd: Change) -> None:
    """Apply a live change to a live run's trainer and record it as a ``config_change`` event."""
    t = r.trainer
    if isinstance(cmd, SetClip):
        old = [t.clip, t.clip_threshold, t.clip_norm_type]
        t.set_clip(cmd.mode, cmd.threshold, cmd.norm_type)
        change = {"field": "clip", "old": old, "new": [t.clip, t.clip_threshold, t.clip_norm_type]}
    else:  # one number, named as the Config field, the command's attribute and the trainer's set_<field>
        field = {SetLr: "lr", SetZLoss: "z_loss", SetWeightDecay: "weight_decay"}[type(cmd)]
        change = {"field": field, "old": getattr(t, field), "new": getattr(cmd, field)}
        getattr(t, f"set_{field}")(change["new"])
    words = _change_words[change["field"]]
    r.add_change({"step": t.step_idx, "kind": "config_change",
                  "message": words(change["old"], change["new"]), **change}, words)


def _trim_heap() -> None:
    """Hand freed memory back to the OS. glibc keeps freed blocks under its mmap threshold (up to 32 MB) in the
    heap, so the optimizer state and data of a released run would otherwise stay in the server's RSS."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass


def check_speed(steps_per_s) -> float:
    """A throttle's steps per second, or ConfigError naming the field and the allowed range."""
    lo, hi = SPEED_RANGE
    ok = isinstance(steps_per_s, (int, float)) and not isinstance(steps_per_s, bool) and lo <= steps_per_s <= hi
    if not ok:  # NaN fails the range test too
        raise ConfigError("speed", steps_per_s, f"allowed: {lo:g} to {hi:g} steps per second, or max")
    return float(steps_per_s)


# How a config_change event words its field's change (old and new as the event holds them).
_change_words = {"lr": lambda old, new: f"lr {old:g} → {new:g}",
                 "clip": lambda old, new: f"{R.describe_clip(*old)} → {R.describe_clip(*new)}",
                 "z_loss": lambda old, new: f"z-loss {old:g} → {new:g}",
                 "weight_decay": lambda old, new: f"weight decay {old:g} → {new:g}"}
