"""Stability maps (training/sweep.py) kept in the run store, one row each: its metadata and its cells as JSON."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from . import export
from .store_file import StoreError, StoreFile

# Made on first use, so a store that never held a map is left as it was.
SWEEPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY, label TEXT NOT NULL, created REAL NOT NULL, meta_json TEXT NOT NULL,
    cells_json TEXT NOT NULL, n_cells INTEGER NOT NULL, complete INTEGER NOT NULL
);
"""


class StoreSweeps(StoreFile):
    """Saving, listing, loading and deleting stability maps; the table is made on first use."""

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

