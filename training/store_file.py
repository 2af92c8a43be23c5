"""Opening a run store's file: its schema, the check on open, the copies kept of a damaged file, connections.

The check runs before anything writes to the file: a foreign or newer schema, or a file SQLite finds damaged
(``PRAGMA quick_check``), is refused in one line; a write-ahead log that lost commits (training/wal.py) or a run
holding fewer rows than it recorded is listed in ``damage``. Either way the database files are copied aside first
(``kept``), because the first connection to close would checkpoint the log and delete the evidence.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from . import wal

DB_NAME = "runs.sqlite3"
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


class StoreError(RuntimeError):
    """The store cannot be opened or read; the message says where and why, in one line."""


def default_data_dir() -> Path:
    """``$GEL_DATA_DIR``, or ``./data`` in the working directory."""
    return Path(os.environ.get("GEL_DATA_DIR", "").strip() or "data")


def db_path(path: str | os.PathLike | None = None) -> Path:
    """The SQLite file of a store: ``path`` if it names one (.sqlite3, .sqlite, .db), else FOLDER/runs.sqlite3;
    the folder defaults to default_data_dir()."""
    p = Path(path) if path is not None else default_data_dir()
    return p if p.suffix in (".sqlite3", ".sqlite", ".db") else p / DB_NAME


class StoreFile:
    """The file under a Store: ``path``, what the check on open found (``damage``, ``kept``), and connections."""

    def _open(self, p: Path) -> None:
        """Check ``p`` if it exists, then make the schema; StoreError when it cannot be opened or is refused."""
        self.path = p
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

    # Each call opens its own short connection, so any thread may read while the writer writes.
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

