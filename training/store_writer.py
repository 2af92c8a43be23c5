"""Writing runs into the store: the RunObserver hooks buffer each attached run, one thread writes them.

The hooks run on the run's threads and only append to an in-memory buffer per run (``_Source``); one writer
thread per store drains every attached run in a single transaction every ``FLUSH_S`` seconds. It ends by itself
once no attached run is live, and starts again on the next ``attach``. A write that fails (disk full, locked too
long) keeps its rows and is retried.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time

import numpy as np

from . import export
from .runner import Run, Runner, RunObserver, track_thread
from .store_file import StoreFile

FLUSH_S = 0.25  # a batch at least this often: a killed server loses at most this much (plus one commit)
HEARTBEAT_S = 2.0  # a live run's `updated` is refreshed this often even while paused


class _Source:
    """One attached run, as the writer sees it: the rows and events recorded and not yet taken, under ``lock``
    (the observer hooks append on the run's threads, the writer takes them)."""

    def __init__(self, run: Run):
        self.run = run
        self.created = time.time()
        self.inserted = False
        self.beat = 0.0  # last time `updated` was written
        self.lock = threading.Lock()
        self.rows: list[tuple[int, np.ndarray]] = []
        self.events: list[dict] = []
        self.ended = False  # on_end seen: after this take, nothing more comes

    def take(self) -> tuple[list[tuple[int, np.ndarray]], list[dict], bool]:
        with self.lock:
            rows, events, self.rows, self.events = self.rows, self.events, [], []
            return rows, events, self.ended


class StoreWriter(StoreFile, RunObserver):
    """Attaching runs, the observer hooks, flush and close, and the writer thread behind them."""

    def _init_writer(self) -> None:
        self._cv = threading.Condition()  # the writer waits on it between batches; flush() and close() wake it
        self._sources: dict[str, _Source] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._requested = self._done = 0  # flush generations: flush() waits until its own has been written
        self.error: str | None = None  # the last write failure, for the UI; rows are kept and retried
        self._retry: list[tuple] = []

    def attach(self, runner: Runner) -> None:
        """Save every run of ``runner`` from now on. Call before ``runner.start()`` so no step is missed."""
        self._add_sources(runner.runs)
        runner.observe(self)

    def attach_run(self, run: Run) -> None:
        """Save ``run``, stepped without a Runner (the CLI); it must call ``run.release()`` when it ends."""
        self._add_sources([run])
        run.observers.append(self)

    def _add_sources(self, runs: list[Run]) -> None:
        while True:
            with self._cv:
                t = self._thread
                if t is None or not self._stopping:
                    for run in runs:
                        self._sources.setdefault(run.id, _Source(run))
                    if t is None:
                        self._stopping = False
                        self._thread = track_thread(threading.Thread(target=self._loop, name="store-writer",
                                                                     daemon=True))
                        self._thread.start()
                    break
            t.join()  # a close() is ending the writer: let it, then start a fresh one

    # The observer hooks (RunObserver): on the run's threads, under its lock; they only append.
    def on_step(self, run: Run, step: int, row: np.ndarray) -> None:
        s = self._sources.get(run.id)
        if s is not None:
            with s.lock:
                s.rows.append((step, row))

    def on_event(self, run: Run, event: dict, replaces: dict | None = None) -> None:
        s = self._sources.get(run.id)
        if s is None:
            return
        with s.lock:  # a folded change not saved yet replaces its first version; saved already, it follows it
            at = next((i for i, e in enumerate(s.events) if e is replaces), None) if replaces is not None else None
            if at is None:
                s.events.append(event)
            else:
                s.events[at] = event

    def on_end(self, run: Run) -> None:
        s = self._sources.get(run.id)
        if s is not None:
            with s.lock:
                s.ended = True

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything recorded so far; True once written (immediately when nothing is attached)."""
        with self._cv:
            if self._thread is None:
                return True
            self._requested += 1
            gen = self._requested
            self._cv.notify_all()
            return self._cv.wait_for(lambda: self._done >= gen or self._thread is None, timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Flush and end the writer thread; the store stays usable (a later attach starts a new writer)."""
        with self._cv:
            t = self._thread
            self._stopping = True
            self._cv.notify_all()
        if t is not None:
            t.join(timeout)
        return t is None or not t.is_alive()

    def _saving(self, run_id: str) -> bool:
        """Whether ``run_id`` is attached and not fully written yet."""
        with self._cv:
            return run_id in self._sources

    def _loop(self) -> None:
        conn = self._connect()
        try:
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._stopping or self._requested > self._done, FLUSH_S)
                    gen, stopping = self._requested, self._stopping
                    sources = list(self._sources.values())
                finished = self._flush(conn, sources)
                with self._cv:
                    for s in finished:
                        self._sources.pop(s.run.id, None)
                    self._done = gen
                    if stopping or (not self._sources and not self._retry):
                        self._thread = None
                        self._cv.notify_all()
                        return
                    self._cv.notify_all()
        finally:
            conn.close()

    def _flush(self, conn: sqlite3.Connection, sources: list[_Source]) -> list[_Source]:
        """One transaction for every source; returns the sources that are finished and fully written."""
        now = time.time()
        metrics, events, runs_new, runs_upd, finished = [], [], [], [], []
        for s in sources:
            rows, evs, done = s.take()
            status, error = s.run.status, s.run.error  # after take: once done, the final status
            if not s.inserted:
                runs_new.append((s.run.id, s.run.label, json.dumps(s.run.cfg.to_dict()), status, error, s.created,
                                 now, json.dumps(s.run.columns), s.run.device))
            metrics += [(s.run.id, step, np.asarray(row, dtype=np.float64).tobytes()) for step, row in rows]
            events += [(s.run.id, e.get("step"), e.get("kind"), _dumps(e)) for e in evs]
            if rows or evs or done or not s.inserted or now - s.beat >= HEARTBEAT_S:
                loss = float(rows[-1][1][0]) if rows else math.nan
                runs_upd.append((status, error, now, len(rows), bool(rows), loss if math.isfinite(loss) else None,
                                 s.run.id))
                s.beat = now
            if done:
                finished.append(s)
        batch = (runs_new, metrics, events, runs_upd)
        try:
            self._write(conn, *self._retry, batch)
            self._retry, self.error = [], None
        except sqlite3.Error as e:  # disk full, locked too long: keep the rows and try again next time
            self.error = f"cannot write to the run store at {self.path}: {e}"
            self._retry.append(batch)
            for s in sources:
                s.inserted = True  # its insert is in the retried batch
            return []
        for s in sources:
            s.inserted = True
        return finished

    def _write(self, conn: sqlite3.Connection, *batches) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for runs_new, metrics, events, runs_upd in batches:
                conn.executemany("INSERT OR IGNORE INTO runs (id, label, config_json, status, error, created, "
                                 "updated, columns_json, device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", runs_new)
                conn.executemany("INSERT OR REPLACE INTO metrics (run_id, step, data) VALUES (?, ?, ?)", metrics)
                conn.executemany("INSERT INTO events (run_id, step, kind, json) VALUES (?, ?, ?, ?)", events)
                conn.executemany("UPDATE runs SET status = ?, error = coalesce(?, error), updated = ?, "
                                 "n_steps = n_steps + ?, last_loss = CASE WHEN ? THEN ? ELSE last_loss END "
                                 "WHERE id = ?", runs_upd)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _dumps(event: dict) -> str:
    # Python's JSON keeps NaN and Infinity (an explosion event's loss is often one); export() writes null instead.
    return json.dumps(event, default=export.plain)

