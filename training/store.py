"""The run store: every run's config, status, events and every step's metrics, in one SQLite file.

WAL mode with ``synchronous=NORMAL`` makes each commit survive a killed process (only a power cut can lose the
last commits), and the writer commits every ``FLUSH_S`` seconds, so a ``kill -9`` loses at most the rows of the
last flush interval.

``Store`` is one class made of four parts, one module each:
- store_file.py: the schema, the check on open (a foreign, newer or damaged file is refused, lost rows are
  listed, and the files are copied aside first), and connections;
- store_writer.py: the observer hooks and the writer thread, so the training thread never touches SQLite;
- store_read.py: listing, loading, overlaying, exporting and deleting runs;
- store_sweeps.py: the stability maps.
"""

from __future__ import annotations

import os

from .store_file import DB_NAME, KEPT_GLOB, REASONS, SCHEMA, SCHEMA_VERSION, StoreError, db_path, default_data_dir
from .store_read import INTERRUPTED, STALE_S, StoredRun, StoreReader, thin
from .store_sweeps import SWEEPS_SCHEMA, StoreSweeps
from .store_writer import FLUSH_S, HEARTBEAT_S, StoreWriter

__all__ = ["DB_NAME", "FLUSH_S", "HEARTBEAT_S", "INTERRUPTED", "KEPT_GLOB", "REASONS", "SCHEMA", "SCHEMA_VERSION",
           "STALE_S", "SWEEPS_SCHEMA", "Store", "StoreError", "StoredRun", "db_path", "default_data_dir", "thin"]


class Store(StoreWriter, StoreReader, StoreSweeps):
    def __init__(self, path: str | os.PathLike | None = None, stale_s: float = STALE_S):
        """``path``: a data folder (created, mode 700) or a ``.sqlite3`` / ``.db`` file; default: default_data_dir().

        StoreError when it cannot be opened, is not a run store, or is damaged (see the module docstring)."""
        self.stale_s = stale_s
        self._open(db_path(path))
        self._init_writer()
