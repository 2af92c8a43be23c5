"""Reading the run store: the runs listed, one run's config, metrics and events, overlays, export, delete.

Only JSON and float64 bytes are stored; nothing is ever unpickled. A row that cannot be read (a config that is
not JSON, say) is left out of ``list_runs`` and named by ``unreadable_runs``; the other runs stay readable.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import export
from .runner import LIVE
from .store_file import StoreError, StoreFile

STALE_S = 15.0  # a run that says it is live but has not been updated for this long was interrupted
INTERRUPTED = "interrupted"


class StoredRun(NamedTuple):
    config: dict
    status: str
    columns: list[str]
    steps: np.ndarray  # (n,) int64, ascending
    rows: np.ndarray  # (n, len(columns)) float64, row i is step steps[i]
    events: list[dict]


class StoreReader(StoreFile):
    """The read side of a Store, and delete_run (which the writer must not be saving)."""

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
        if self._saving(run_id):  # store_writer.py: it would go on writing rows of a run no longer listed
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
