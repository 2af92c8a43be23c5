"""The process-wide registry of runners, keyed by run id, so runs outlive a browser tab.

A refresh or a second browser reattaches to a live run through its id (the URL's ``?run=``). A cap on
concurrently running runners keeps the machine responsive; a Start beyond it is refused, saying how many
slots are taken (never which runs: their ids would let one user read another's runs). Stability-map sweeps
run here too (``start_sweep``), holding one slot per process that trains their cells (training/mapjob.py).
A run nobody has watched (``touch``) for ``idle_pause_s`` pauses itself, freeing its slot, and resumes on the
next ``touch``; a paused run nobody has watched for ``idle_stop_s`` (its tab closed) is stopped, which frees its
model.
An ended run keeps only its history and events, and ended runs are dropped, oldest first, beyond a count and
a byte bound. With a store, every run is saved as it trains and runs from before a restart stay listed
(``past_runs``).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref

from . import sweep as SW
from .config import Config, env_number
from .mapjob import MapJob, sweep_slots
from .runner import LIVE, RUNNING, Runner, track_thread
from .store import Store, StoredRun, StoreError, default_data_dir

DEFAULT_MAX_RUNNING = env_number("GEL_MAX_RUNNING", os.cpu_count() or 1, 1, 1024)
DEFAULT_IDLE_PAUSE_S = env_number("GEL_IDLE_PAUSE_S", 120.0, 0.0, 7 * 24 * 3600.0, float)  # 0: never pause
# A paused run nobody has watched for this long (its tab was closed) is stopped, which frees its model, optimizer
# and data; its steps stay in the store. 0: never.
DEFAULT_IDLE_STOP_S = env_number("GEL_IDLE_STOP_S", 3600.0, 0.0, 30 * 24 * 3600.0, float)
# Ended runners kept in memory for reattaching (an ended run holds only its history, events and probes, a few MB;
# its model and data are freed when it ends); beyond either bound the oldest are dropped and live on in the store.
KEEP_FINISHED = env_number("GEL_KEEP_FINISHED", 32, 0, 100_000)
KEEP_FINISHED_MB = env_number("GEL_KEEP_FINISHED_MB", 256, 0, 1_000_000)
KEEP_SWEEPS = 16  # ended sweeps kept for the pages that show them (a few kB of results each), oldest dropped

_managers: weakref.WeakSet[RunManager] = weakref.WeakSet()


class CapacityError(RuntimeError):
    pass


class RunManager:
    def __init__(self, max_running: int = DEFAULT_MAX_RUNNING, store: Store | None = None,
                 idle_pause_s: float = DEFAULT_IDLE_PAUSE_S, keep_finished: int = KEEP_FINISHED,
                 keep_finished_bytes: int = KEEP_FINISHED_MB * 1_000_000, idle_stop_s: float = DEFAULT_IDLE_STOP_S):
        self.max_running = max_running
        self.store = store
        self.idle_pause_s = idle_pause_s
        self.idle_stop_s = idle_stop_s
        self.keep_finished = keep_finished
        self.keep_finished_bytes = keep_finished_bytes
        self.store_error: str | None = None  # why runs are not being saved, for a banner (see get_manager)
        self._lock = threading.Lock()
        self._runners: dict[str, Runner] = {}  # keyed by the first run's id; insertion order = creation order
        self._seen: dict[str, float] = {}  # run id -> monotonic time of the last touch (or the start)
        self._idle: set[str] = set()  # paused by the watchdog, not by a person: a touch resumes them
        self._building = 0  # running starts whose runner is being built, outside the lock: they hold a slot
        self._sweeps: dict[str, MapJob] = {}  # keyed by job id; insertion order = creation order
        self._watchdog: tuple[threading.Thread, threading.Event] | None = None
        _managers.add(self)

    def start(self, configs: Config | list[Config], labels: list[str] | None = None, paused: bool = False,
              device=None, steps_per_s: float | None = None) -> Runner:
        """Build and start a runner, or raise CapacityError when every slot is taken.

        The runner is built outside the lock: a model at the parameter cap takes seconds to build, and every
        route and page that looks up a run takes this lock. Its slot is reserved while it builds."""
        slot = 0 if paused else 1
        with self._lock:
            if slot:
                self._check_room()
            self._building += slot
        try:
            runner = Runner(configs, device=device, labels=labels, steps_per_s=steps_per_s)
        finally:
            with self._lock:
                self._building -= slot
        with self._lock:
            rid = runner.id
            self._runners[rid] = runner
            self._seen[rid] = time.monotonic()
            self._prune()
            self._ensure_watchdog()
        if self.store is not None:
            self.store.attach(runner)  # before start: the first step is saved too
        runner.start(paused=paused)
        return runner

    def get(self, run_id: str) -> Runner | None:
        """The runner keyed by ``run_id`` (its first run's id), or None."""
        with self._lock:
            return self._runners.get(run_id)

    def find(self, run_id: str) -> tuple[Runner, int] | None:
        """The runner holding run ``run_id`` (any of its runs) and that run's index, or None."""
        with self._lock:
            return self._find(run_id)

    def runners(self) -> list[Runner]:
        with self._lock:
            return list(self._runners.values())

    def start_sweep(self, sweep: SW.Sweep, backend: str) -> MapJob:
        """Start ``sweep`` on its own thread, holding ``sweep_slots`` of the free slots, or raise CapacityError
        when none is free. A local sweep trains on as many worker processes as the slots it holds."""
        with self._lock:
            self._check_room()
            job = MapJob(sweep, backend, sweep_slots(backend, self.max_running - self._used()))
            self._sweeps[job.id] = job
            ended = [jid for jid, j in self._sweeps.items() if not j.alive]
            for jid in ended[:max(len(ended) - KEEP_SWEEPS, 0)]:
                del self._sweeps[jid]
        return job.start()

    def sweep(self, job_id: str | None) -> MapJob | None:
        """The sweep started as ``job_id`` (running or among the last KEEP_SWEEPS ended), or None."""
        with self._lock:
            return self._sweeps.get(job_id) if job_id else None

    def running(self) -> list[Runner]:
        return [r for r in self.runners() if r.alive and any(run.status == RUNNING for run in r.runs)]

    # Watching, pausing and resuming.
    def touch(self, run_id: str) -> bool:
        """Someone is watching ``run_id`` (call on every refresh). True when this resumed an idle-paused run.

        A run paused for idleness stays paused when every slot is taken (``idle_paused`` stays true);
        a run a person paused is never resumed here.
        """
        with self._lock:
            rid = self._key(run_id)
            if rid is None:
                return False
            self._seen[rid] = time.monotonic()
            if rid not in self._idle or self._used(exclude=rid) >= self.max_running:
                return False
            self._idle.discard(rid)
            runner = self._runners[rid]
            runner.resume()  # queued after the watchdog's pause, so it wins even if that has not landed yet
            for run in runner.runs:
                run.add_event({"step": run.trainer.step_idx, "kind": "idle_resume",
                               "message": "resumed: someone is watching again"})
            return True

    def idle_paused(self, run_id: str) -> bool:
        """True while ``run_id`` is paused because nobody watched it."""
        with self._lock:
            return self._key(run_id) in self._idle

    def pause(self, run_id: str) -> None:
        """A person pauses the run: a later touch will not resume it."""
        with self._lock:
            rid = self._key(run_id)
            if rid is None:
                raise KeyError(f"no live run {run_id!r}")
            self._idle.discard(rid)
            self._runners[rid].pause()

    def resume(self, run_id: str) -> None:
        """A person resumes the run; CapacityError when every slot is taken."""
        with self._lock:
            rid = self._key(run_id)
            if rid is None:
                raise KeyError(f"no live run {run_id!r}")
            self._check_room(exclude=rid)
            self._idle.discard(rid)
            self._seen[rid] = time.monotonic()
            self._runners[rid].resume()

    # The store.
    def past_runs(self) -> list[dict]:
        """Every stored run, newest first (see Store.list_runs), with ``live``: True when it trains in this process."""
        if self.store is None:
            return []
        live = {run.id: run for r in self.runners() if r.alive for run in r.runs}
        out = self.store.list_runs()
        for info in out:
            run = live.get(info["id"])
            info["live"] = run is not None
            if run is not None:
                info["status"] = run.status  # fresher than the last flush
        return out

    def open_run(self, run_id: str) -> StoredRun:
        """A stored run at full resolution (see Store.load_run); KeyError when there is no such run or no store."""
        if self.store is None:
            raise KeyError(f"no stored run {run_id!r}: this manager has no store")
        return self.store.load_run(run_id)

    # Ending.
    def stop_all(self, timeout: float = 1.0) -> None:
        """Stop every run and every sweep."""
        for r in self.runners():
            r.stop(timeout)
        with self._lock:
            sweeps = list(self._sweeps.values())
        for j in sweeps:
            j.stop(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop every run, the watchdog and the store's writer (after a last flush); True when all have ended."""
        self.stop_all(timeout)
        with self._lock:
            wd, self._watchdog = self._watchdog, None
        if wd is not None:
            wd[1].set()
            wd[0].join(timeout)
        ok = self.store.close(timeout) if self.store is not None else True
        with self._lock:
            sweeps = list(self._sweeps.values())
        return (ok and not any(r.alive for r in self.runners()) and not any(j.thread.is_alive() for j in sweeps)
                and (wd is None or not wd[0].is_alive()))

    # Internals; the callers hold self._lock.
    def _find(self, run_id: str) -> tuple[Runner, int] | None:
        runner = self._runners.get(run_id)
        if runner is not None:
            return runner, 0
        return next(((r, i) for r in self._runners.values() for i, run in enumerate(r.runs) if run.id == run_id),
                    None)

    def _key(self, run_id: str) -> str | None:
        found = self._find(run_id)
        return found[0].id if found is not None else None

    def _check_room(self, exclude: str | None = None) -> None:
        """CapacityError unless a slot is free. The message counts the slots and names no run: it is shown to
        whoever pressed Start, and another session's run id is all it takes to read that run."""
        used = self._used(exclude)
        if used >= self.max_running:
            raise CapacityError(f"every training slot is in use ({used} of {self.max_running}); "
                                f"stop or pause a run of yours, or try again when one ends")

    def _used(self, exclude: str | None = None) -> int:
        """Slots taken: running runners (but ``exclude``), runners being built, and the live sweeps' slots."""
        runs = sum(1 for rid, r in self._runners.items()
                   if r.alive and not r.paused and rid not in self._idle and rid != exclude)
        return runs + self._building + sum(j.slots for j in self._sweeps.values() if j.alive)

    def _prune(self) -> None:
        """Drop ended runners, oldest first, beyond ``keep_finished`` of them or ``keep_finished_bytes`` held."""
        done = [rid for rid, r in self._runners.items()
                if not r.alive and not any(run.status in LIVE for run in r.runs)]
        held = {rid: sum(run.held_bytes() for run in self._runners[rid].runs) for rid in done}
        total = sum(held.values())
        for i, rid in enumerate(done):  # oldest first
            if len(done) - i <= self.keep_finished and total <= self.keep_finished_bytes:
                break
            total -= held[rid]
            del self._runners[rid]
            self._seen.pop(rid, None)
            self._idle.discard(rid)

    def _ensure_watchdog(self) -> None:
        if (self.idle_pause_s <= 0 and self.idle_stop_s <= 0) or self._watchdog is not None:
            return
        stop = threading.Event()
        t = track_thread(threading.Thread(target=self._watch, args=(stop,), name="run-watchdog", daemon=True))
        self._watchdog = (t, stop)
        t.start()

    def _watch(self, stop: threading.Event) -> None:
        """One thread per manager: pause runs nobody touched for idle_pause_s, stop paused ones nobody touched for
        idle_stop_s; end when no run is live."""
        interval = min(max(min(x for x in (self.idle_pause_s, self.idle_stop_s) if x > 0) / 4, 0.05), 5.0)
        while not stop.wait(interval):
            with self._lock:
                if self._watchdog is None or self._watchdog[1] is not stop:
                    return  # shut down, or replaced
                if not self._pause_idle():
                    self._watchdog = None
                    return

    def _pause_idle(self) -> bool:
        """Pause the unwatched runs and stop the long-unwatched paused ones; False when no run is live any more
        (the watchdog can end)."""
        now, live = time.monotonic(), False
        for rid, r in self._runners.items():
            live = live or any(run.status in LIVE for run in r.runs)
            unseen = now - self._seen.get(rid, now)
            if self.idle_stop_s > 0 and r.alive and r.paused and unseen >= self.idle_stop_s:
                for run in r.runs:
                    run.add_event({"step": run.trainer.step_idx, "kind": "idle_stop",
                                   "message": f"stopped: nobody watched this paused run for {self.idle_stop_s:g} s"})
                r.stop(timeout=0)  # the thread ends at its next wait and frees the model; no wait here
                self._idle.discard(rid)
            elif (self.idle_pause_s > 0 and r.alive and not r.paused and rid not in self._idle
                    and unseen >= self.idle_pause_s):
                r.pause()
                self._idle.add(rid)
                for run in r.runs:
                    run.add_event({"step": run.trainer.step_idx, "kind": "idle_pause",
                                   "message": f"paused: nobody watched this run for {self.idle_pause_s:g} s"})
        return live


def shutdown_all(timeout: float = 5.0) -> bool:
    """Shut down every manager of this process (the test suite calls this before checking for live threads)."""
    return all([m.shutdown(timeout) for m in list(_managers)])


_manager: RunManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> RunManager:
    """The one manager of this process (the Streamlit server shares it across sessions); it saves every run
    to the store in ``$GEL_DATA_DIR`` (default ``./data``). When that folder cannot be opened the lab still
    trains, unsaved, and ``store_error`` says why."""
    global _manager
    with _manager_lock:
        if _manager is None:
            try:
                store, error = Store(default_data_dir()), None
            except StoreError as e:
                store, error = None, f"runs are not being saved: {e} (set GEL_DATA_DIR to a writable folder)"
                print(f"warning: {error}", file=sys.stderr)
            _manager = RunManager(store=store)
            _manager.store_error = error
            atexit.register(_manager.shutdown)  # a last flush when the server exits
        return _manager
