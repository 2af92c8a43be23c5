"""The run store: every run's config, status, events and every step's metrics, in one SQLite file.

The training thread never touches SQLite: the store observes each attached runner (``RunObserver``), its
``on_step`` and ``on_event`` append to an in-memory buffer per run, and one writer thread per store drains every
attached run in a single transaction every ``FLUSH_S`` seconds. WAL mode with
``synchronous=NORMAL`` makes each commit survive a killed process (only a power cut can lose the last
commits), so a ``kill -9`` loses at most the rows of the last flush interval.

The writer thread ends by itself once no attached run is live, and starts again on the next ``attach``.
Only JSON and float64 bytes are stored; nothing is ever unpickled.

Opening checks the file before anything writes to it: a foreign or newer schema, or a file SQLite finds
damaged (``PRAGMA quick_check``), is refused in one line; a write-ahead log that lost commits (training/wal.py)
or a run holding fewer rows than it recorded is listed in ``damage``. Either way the database files are copied
aside first (``kept``), because the first connection to close would checkpoint the log and delete the evidence.
A row that cannot be read (a config that is not JSON, say) is left out of ``list_runs`` and named by
``unreadable_runs``; the other runs stay readable.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import export, wal
from .runner import LIVE, Run, Runner, RunObserver, track_thread

DB_NAME = "runs.sqlite3"
FLUSH_S = 0.25  # a batch at least this often: a killed server loses at most this much (plus one commit)
HEARTBEAT_S = 2.0  # a live run's `updated` is refreshed this often even while paused
STALE_S = 15.0  # a run that says it is live but has not been updated for this long was interrupted
INTERRUPTED = "interrupted"
SCHEMA_VERSION = 1
KEPT_GLOB = "*.damaged-*"  # copies of the database files taken when the check on open failed
REASONS = "REASONS.txt"  # in each copy: what the check found
SHOWN_DAMAGE = 10  # runs named one by one in a damage report; the rest are counted

# Metrics are one row per step holding the whole row as float64 bytes: the columns depend on the model (a
# 64-layer MLP has ~400), so a wide table would need a schema per run; a blob is written with one executemany
# and read back with one np.frombuffer, and NaN/inf survive exactly (SQLite turns a NaN REAL into NULL).
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, label TEXT NOT NULL, config_json TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
    created REAL NOT NULL, updated REAL NOT NULL, columns_json TEXT NOT NULL,
    n_steps INTEGER NOT NULL DEFAULT 0, last_loss REAL, device TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (run_id TEXT NOT NULL, step INTEGER, kind TEXT, json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id);
"""
# Stability maps (training/sweep.py), one row each: its metadata and its cells as JSON. Made on first use, so a
# store that never held a map is left as it was.
SWEEPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY, label TEXT NOT NULL, created REAL NOT NULL, meta_json TEXT NOT NULL,
    cells_json TEXT NOT NULL, n_cells INTEGER NOT NULL, complete INTEGER NOT NULL
);
"""


class StoreError(RuntimeError):
    """The store cannot be opened or read; the message says where and why, in one line."""


class StoredRun(NamedTuple):
    config: dict
    status: str
    columns: list[str]
    steps: np.ndarray  # (n,) int64, ascending
    rows: np.ndarray  # (n, len(columns)) float64, row i is step steps[i]
    events: list[dict]


def default_data_dir() -> Path:
    """``$GEL_DATA_DIR``, or ``./data`` in the working directory."""
    return Path(os.environ.get("GEL_DATA_DIR", "").strip() or "data")


def db_path(path: str | os.PathLike | None = None) -> Path:
    """The SQLite file of a store: ``path`` if it names one (.sqlite3, .sqlite, .db), else FOLDER/runs.sqlite3;
    the folder defaults to default_data_dir()."""
    p = Path(path) if path is not None else default_data_dir()
    return p if p.suffix in (".sqlite3", ".sqlite", ".db") else p / DB_NAME


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


class Store(RunObserver):
    def __init__(self, path: str | os.PathLike | None = None, stale_s: float = STALE_S):
        """``path``: a data folder (created, mode 700) or a ``.sqlite3`` / ``.db`` file; default: default_data_dir().

        StoreError when it cannot be opened, is not a run store, or is damaged (see the module docstring)."""
        p = db_path(path)
        self.path, self.stale_s = p, stale_s
        self.damage: list[str] = []  # what the check on open found lost, one line each; empty when sound
        self.kept: Path | None = None  # where the files were copied when it found something
        self._keep_error: str | None = None
        try:
            p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if p.exists():
                self._check()
            conn = self._connect()
            try:
                conn.executescript(SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                conn.close()  # now, not at the next garbage collection: the last close checkpoints the log
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the run store at {p}: {e}") from None
        self._cv = threading.Condition()
        self._sources: dict[str, _Source] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._requested = self._done = 0  # flush generations: flush() waits until its own has been written
        self.error: str | None = None  # the last write failure, for the UI; rows are kept and retried
        self._retry: list[tuple] = []

    # The check on open, on a read-only connection: it never checkpoints, so the log stays as it was found.
    def _check(self) -> None:
        found = wal.damage(self.path)
        if found:  # read it again: a live writer restarting its log mid-read can look like damage, once
            time.sleep(0.05)
            found = wal.damage(self.path)
        damage = [found] if found else []
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the run store at {self.path}: {e}") from None
        try:
            self._check_schema(conn)
            found = conn.execute("PRAGMA quick_check").fetchall()
            if found != [("ok",)]:
                first = " ".join(str(found[0][0]).replace("*** in database main ***", "").split())
                fatal = f"SQLite's check finds it damaged ({first}; {len(found)} problem(s))"
            else:
                fatal, damage = None, damage + self._check_counts(conn)
        except sqlite3.DatabaseError as e:
            if e.sqlite_errorcode == sqlite3.SQLITE_NOTADB:  # some other file: nothing of ours to keep
                raise StoreError(f"cannot open the run store at {self.path}: {e}") from None
            fatal = f"SQLite cannot read it ({e})"
        finally:
            conn.close()
        self.damage = damage
        if fatal or damage:
            self.kept = self._keep_copy([fatal] if fatal else damage)
        if fatal:
            raise StoreError(f"the run store at {self.path} is damaged: {fatal}; a copy of its files is kept in "
                             f"{self.kept}; move {self.path.name} aside to start an empty store")

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"the run store at {self.path} was written by a newer version (schema {version}; "
                             f"this one reads {SCHEMA_VERSION})")
        for table, columns in _schema_columns().items():
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            if have and not columns <= have:
                missing = sorted(columns - have)[0]
                raise StoreError(f"{self.path} is not a run store: its table {table!r} has no column {missing!r}")

    def _check_counts(self, conn: sqlite3.Connection) -> list[str]:
        """Each run's stored rows against the count it recorded with them (one transaction wrote both), and steps
        from 0 without gaps; rows of runs that are not listed. One statement: one consistent snapshot."""
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'metrics'").fetchone():
            return []
        rows = conn.execute(
            "SELECT r.id, r.n_steps, coalesce(m.n, 0), m.lo, m.hi FROM runs r LEFT JOIN "
            "(SELECT run_id, count(*) AS n, min(step) AS lo, max(step) AS hi FROM metrics GROUP BY run_id) m "
            "ON m.run_id = r.id UNION ALL SELECT run_id, NULL, count(*), NULL, NULL FROM metrics "
            "WHERE run_id NOT IN (SELECT id FROM runs) GROUP BY run_id").fetchall()
        found = []
        for rid, recorded, n, lo, hi in rows:
            if recorded is None:
                found.append(f"{n:,} rows of run {rid!r}, which is not listed")
            elif n != recorded:  # recorded is whatever the row holds: shown with repr unless a count
                shown = f"{recorded:,}" if isinstance(recorded, int) else repr(recorded)
                found.append(f"run {rid!r} holds {n:,} of the {shown} steps it recorded")
            elif n and (lo != 0 or hi != n - 1):
                found.append(f"run {rid!r} has gaps: {n:,} steps stored between step {lo} and step {hi}")
        if len(found) > SHOWN_DAMAGE:
            found = [*found[:SHOWN_DAMAGE], f"and {len(found) - SHOWN_DAMAGE} more runs like these"]
        return found

    def _keep_copy(self, reasons: list[str]) -> Path | None:
        """Copy the database, its log and its index into a new folder beside them, with ``REASONS.txt`` saying
        why; None when that fails. Damage that persists (in the file, or in a log a live process keeps open) is
        found again at every open: the newest copy is reused when it was kept for the same reasons."""
        kept = self.kept_copies()
        text = "\n".join(reasons) + "\n"
        if kept and (kept[-1] / REASONS).exists() and (kept[-1] / REASONS).read_text() == text:
            return kept[-1]
        dest = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            dest.mkdir(mode=0o700, exist_ok=True)
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    shutil.copy2(src, dest / src.name)
            (dest / REASONS).write_text(text)  # last: a copy without it is incomplete, and never reused
        except OSError as e:
            self._keep_error = f"no copy of its files could be kept in {dest}: {e}"
            return None
        return dest

    def warnings(self) -> list[str]:
        """What its users must be told, one line each: what the check on open found, where the files were
        copied, and the copies earlier checks kept (shown until someone deletes them)."""
        lines = [f"the run store at {self.path} lost data: {d}" for d in self.damage]
        if self.damage:
            lines.append(f"its files as found are kept in {self.kept}" if self.kept else str(self._keep_error))
        older = [p for p in self.kept_copies() if p != self.kept]
        if older:
            lines.append(f"{len(older)} cop{'y' if len(older) == 1 else 'ies'} of damaged store files kept by earlier "
                         f"checks, newest {older[-1]}: the rows lost are only there; delete when done")
        return lines

    def kept_copies(self) -> list[Path]:
        """Every copy kept beside this store by a check that failed (this time or before), oldest first."""
        return sorted(p for p in self.path.parent.glob(KEPT_GLOB) if p.is_dir() and
                      p.name.startswith(self.path.name + ".damaged-"))

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # in WAL: durable across a crashed process, fast
        return conn

    # Writing.
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

    # Reading: each call opens its own short connection, so any thread may read while the writer writes.
    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._connect()
            try:
                yield conn
            finally:
                conn.close()
        except sqlite3.Error as e:
            raise StoreError(f"cannot read the run store at {self.path}: {e}") from None

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._reader() as conn:
            return conn.execute(sql, args).fetchall()

    _LIST = ("SELECT id, label, status, error, created, updated, n_steps, last_loss, device, config_json, "
             "columns_json FROM runs")

    def list_runs(self) -> list[dict]:
        """Every stored run that can be read, newest first, without its metrics (see ``unreadable_runs``).

        Keys: id, label, status, error, created, updated (Unix seconds), steps (rows stored), last_loss
        (None when unknown or non-finite), device, config (dict). A run whose process died shows "interrupted".
        """
        return [r for r in map(self._parse, self._read(self._LIST + " ORDER BY created DESC")) if "why" not in r]

    def unreadable_runs(self) -> list[tuple[str, str]]:
        """(id, why) of each stored run whose row cannot be read (and which ``list_runs`` leaves out)."""
        return [(r["id"], r["why"]) for r in map(self._parse, self._read(self._LIST + " ORDER BY rowid"))
                if "why" in r]

    def outcomes(self) -> dict[str, dict]:
        """Each run's outcome event (training/outcome.py), by run id: recorded at a run's last step, so a run
        still training, stopped or interrupted has none."""
        rows = self._read("SELECT rowid, run_id, step, json FROM events WHERE kind = 'outcome' ORDER BY rowid")
        found = {}
        for rowid, rid, step, text in rows:
            e = _event(rowid, step, text)
            if e.get("kind") == "outcome":  # an unreadable one is left out; the run's events show it
                found[rid] = e
        return found

    def run_info(self, run_id: str) -> dict:
        """One run's list_runs() entry; KeyError when it is not stored, StoreError when its row is unreadable."""
        rows = self._read(self._LIST + " WHERE id = ?", (run_id,))
        if not rows:
            raise KeyError(f"no stored run {run_id!r}")
        info = self._parse(rows[0])
        if "why" in info:
            raise StoreError(f"run {run_id!r} in {self.path} is unreadable: {info['why']}")
        return info

    def _parse(self, r: tuple) -> dict:
        """A runs row as a list_runs() entry, or {"id", "why"} saying what makes it unreadable."""
        rid, label, status, error, created, updated, n, loss, device, cfg, cols = r
        try:
            _need(isinstance(rid, str), "its id is not text")
            _need(all(isinstance(v, str) for v in (label, status)), "its label or status is not text")
            _need(all(_number(v) for v in (created, updated)), "its times are not numbers")
            _need(isinstance(n, int) and n >= 0, "its step count is not a whole number")
            _need(loss is None or _number(loss), "its last loss is not a number")
            config, columns = _json(cfg, "config_json", dict), _json(cols, "columns_json", list)
            _need(all(isinstance(c, str) for c in columns), "columns_json holds something other than names")
        except ValueError as e:
            return {"id": str(rid), "why": str(e)}
        return {"id": rid, "label": label, "status": self._status(status, updated), "error": error,
                "created": created, "updated": updated, "steps": n, "last_loss": loss,
                "device": device if isinstance(device, str) else None, "config": config}

    def _status(self, status: str, updated: float) -> str:
        # A live run's writer refreshes `updated` every HEARTBEAT_S; silence means its process is gone.
        return INTERRUPTED if status in LIVE and time.time() - updated > self.stale_s else status

    def load_run(self, run_id: str) -> StoredRun:
        """Config, status, columns, every stored step and row, and the events; KeyError when it is not stored,
        StoreError when its row is unreadable. An event that cannot be read becomes an ``unreadable`` event."""
        with self._reader() as conn:
            info = conn.execute(self._LIST + " WHERE id = ?", (run_id,)).fetchall()
            if not info:
                raise KeyError(f"no stored run {run_id!r}")
            data = conn.execute("SELECT step, data FROM metrics WHERE run_id = ? ORDER BY step", (run_id,)).fetchall()
            events = conn.execute("SELECT rowid, step, json FROM events WHERE run_id = ? ORDER BY rowid",
                                  (run_id,)).fetchall()
        parsed = self._parse(info[0])
        if "why" in parsed:
            raise StoreError(f"run {run_id!r} in {self.path} is unreadable: {parsed['why']}")
        columns = json.loads(info[0][-1])
        steps = np.fromiter((d[0] for d in data), dtype=np.int64, count=len(data))
        try:
            rows = np.frombuffer(b"".join(d[1] for d in data), dtype=np.float64).reshape(len(data), len(columns))
        except (ValueError, TypeError):
            raise StoreError(f"run {run_id!r} in {self.path} has metric rows of the wrong size") from None
        return StoredRun(parsed["config"], parsed["status"], columns, steps, rows.copy(),
                         [_event(*e) for e in events])

    def to_dataframe(self, run_id: str):
        """The run's metrics as a pandas DataFrame in the export schema (``training/export.py``)."""
        return _frame(self.load_run(run_id))

    def series(self, run_ids: list[str], column: str, max_points: int | None = 4000) -> dict[str, dict]:
        """One column of several runs, for overlaying: {run_id: {step, value, lo, hi}}.

        Longer runs are cut into ``max_points`` buckets drawn at their last step with the last value and
        the bucket's min and max (NaN-aware), so a one-step spike survives the thinning.
        """
        out = {}
        for rid in run_ids:
            r = self.load_run(rid)
            if column not in r.columns:
                raise KeyError(f"run {rid!r} has no column {column!r}")
            out[rid] = thin(r.steps, r.rows[:, r.columns.index(column)], max_points)
        return out

    def export(self, run_id: str, path: str | os.PathLike) -> Path:
        """Write the metrics to ``path`` (.csv or .parquet, the schema of ``training/export.py``) and config, status
        and events to PATH.events.json, both or neither (each renamed into place); returns the sidecar's path.
        ValueError for another suffix, OSError when the files cannot be written."""
        p = Path(path)
        if p.suffix not in export.FORMATS:
            raise ValueError(f"export: {p.name!r} must end in .csv or .parquet")
        r = self.load_run(run_id)
        return export.write_run(p, r.steps, r.columns, r.rows, r.config, r.status, r.events)

    def delete_run(self, run_id: str) -> bool:
        """Forget a finished run (metrics, events, the run); True when it was stored. A run still being
        saved by this store is refused with ValueError: stop it first."""
        with self._cv:
            if run_id in self._sources:
                raise ValueError(f"run {run_id!r} is still being saved; stop it first")
        with self._reader() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
            n = conn.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount
            conn.execute("COMMIT")
        return n > 0

    def integrity(self) -> str:
        """SQLite's own check: "ok" when the file is sound."""
        return self._read("PRAGMA integrity_check")[0][0]

    @contextmanager
    def _sweeps(self) -> Iterator[sqlite3.Connection]:
        """A connection with the sweeps table made; StoreError, in one line, when the file cannot hold it."""
        try:
            with self._reader() as conn:
                conn.executescript(SWEEPS_SCHEMA)
                yield conn
        except StoreError as e:
            raise StoreError(f"cannot use the sweeps in the run store at {self.path}: {e}") from None

    def save_sweep(self, cells: list[dict], meta: dict, label: str = "") -> str:
        """Save a stability map (finished or cancelled: ``meta["complete"]`` says which); returns its id.
        ``cells``: one dict per cell result; their NaN and inf are kept (Python's JSON writes them)."""
        sweep_id = uuid.uuid4().hex[:12]
        label = label or f"{meta['x']['spec']} x {meta['y']['spec']}"
        with self._sweeps() as conn:
            conn.execute("INSERT INTO sweeps (id, label, created, meta_json, cells_json, n_cells, complete) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (sweep_id, label, time.time(), json.dumps(export.finite(meta)), json.dumps(cells),
                          len(cells), int(bool(meta.get("complete")))))
        return sweep_id

    def list_sweeps(self) -> list[dict]:
        """Saved maps, newest first: id, label, created (Unix s), x and y (axis specs), cells, complete."""
        with self._sweeps() as conn:
            rows = conn.execute("SELECT id, label, created, meta_json, n_cells, complete FROM sweeps "
                                "ORDER BY created DESC").fetchall()
        out = []
        for sid, label, created, meta, n, complete in rows:
            try:
                m = json.loads(meta)
                x, y = m["x"]["spec"], m["y"]["spec"]
            except (TypeError, ValueError, KeyError, RecursionError) as e:  # listed as such: loading it says why
                label, x, y, complete = f"unreadable ({type(e).__name__})", "?", "?", False
            out.append({"id": str(sid), "label": str(label), "created": created, "x": x, "y": y,
                        "cells": n if isinstance(n, int) else 0, "complete": bool(complete)})
        return out

    def load_sweep(self, sweep_id: str) -> tuple[list[dict], dict]:
        """(cells, metadata) of a saved map; KeyError when there is none with this id."""
        with self._sweeps() as conn:
            row = conn.execute("SELECT meta_json, cells_json FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise KeyError(f"no stored sweep {sweep_id!r}")
        return json.loads(row[1]), json.loads(row[0])

    def delete_sweep(self, sweep_id: str) -> bool:
        """Remove a saved map; False when there was none with this id."""
        with self._sweeps() as conn:
            return conn.execute("DELETE FROM sweeps WHERE id = ?", (sweep_id,)).rowcount > 0


@lru_cache(maxsize=1)
def _schema_columns() -> dict[str, set[str]]:
    """{table: its columns} as SCHEMA creates them: what an existing file must have to be a run store."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    finally:
        conn.close()


def _need(ok: bool, why: str) -> None:
    if not ok:
        raise ValueError(why)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json(text, what: str, kind: type):
    try:
        v = json.loads(text)
    except (TypeError, ValueError, RecursionError) as e:  # not text, not JSON, nested beyond reason
        raise ValueError(f"{what} is not valid JSON ({str(e)[:80]})") from None
    _need(isinstance(v, kind), f"{what} is not a JSON {'object' if kind is dict else 'array'}")
    return v


def _event(rowid: int, step, text) -> dict:
    """One stored event; one that cannot be read is shown as what it is rather than dropped."""
    try:
        e = json.loads(text)
        _need(isinstance(e, dict), "not a JSON object")
        return e
    except (TypeError, ValueError, RecursionError) as e:
        return {"step": step, "kind": "unreadable", "message": f"stored event {rowid} cannot be read ({str(e)[:80]})"}


def _frame(r: StoredRun):
    return export.frame(r.steps, r.columns, r.rows)  # the one export schema (training/export.py)


def thin(steps: np.ndarray, values: np.ndarray, max_points: int | None) -> dict[str, np.ndarray]:
    n = len(steps)
    if max_points is None or n <= max_points:
        return {"step": steps, "value": values, "lo": values, "hi": values}
    width = -(-n // max_points)  # ceil
    pad = -n % width
    v = np.concatenate([values, np.full(pad, np.nan)]).reshape(-1, width)
    last = np.minimum(np.arange(1, len(v) + 1) * width, n) - 1
    with warnings.catch_warnings():  # an all-NaN bucket is simply NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(v, axis=1), np.nanmax(v, axis=1)
    return {"step": steps[last], "value": values[last], "lo": lo, "hi": hi}


def _dumps(event: dict) -> str:
    # Python's JSON keeps NaN and Infinity (an explosion event's loss is often one); export() writes null instead.
    return json.dumps(event, default=export.plain)
