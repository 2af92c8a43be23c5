"""One table schema for every export of a run: the CLI's ``--out``, the lab's download and the Saved runs page.

Columns, in order:

- ``step`` (int64), then ``loss``, ``lr``, ``grad_norm_pre_clip``, ``grad_norm_post_clip`` (float64);
- ``clipped`` (bool: true when clipping changed the gradients at that step);
- ``test_loss``, ``test_accuracy`` (float64): the held-out set's loss and accuracy on the steps that evaluated
  it (every ``eval_every`` steps, on a probe step), NaN on the others. On the adding task, a regression, the
  accuracy is the fraction of outputs within ``data.ACCURACY_TOLERANCE`` (0.04) of the target;
- ``grad_norm/<param>``, ``weight_norm/<param>``, ``update_ratio/<param>`` (float64) for every parameter, in
  ``model.named_parameters()`` order.

CSV writes NaN as ``nan`` and infinities as ``inf`` / ``-inf`` (pandas reads them back); Parquet keeps them.
A file and its ``FILE.events.json`` sidecar are written together, each to a temporary file renamed into place,
so a failed write leaves the previous pair, never half a table or a sidecar that describes another run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .data import TASKS, accuracy_note
from .layout import clipped_share

HEAD = ["step", "loss", "lr", "grad_norm_pre_clip", "grad_norm_post_clip", "clipped", "test_loss", "test_accuracy"]
FORMATS = (".csv", ".parquet")


def accuracy_meaning(dataset: str) -> str:
    """What ``test_accuracy`` measures on a dataset, in words (the sidecar says it beside the table)."""
    if TASKS.get(dataset) == "regression":
        return f"fraction of test outputs {accuracy_note(dataset)}"
    return "fraction of test examples classified correctly"


def frame(steps: Sequence[int] | np.ndarray, columns: Sequence[str], rows: np.ndarray,
          evaluations: Sequence[dict] = ()):
    """The export table from a run's steps, its row columns (``Trainer.columns``, in any order, with or without
    the test columns) and its rows (one per step): the schema above, missing test columns filled with NaN.

    ``evaluations`` (probes with ``step``, ``test_loss``, ``test_accuracy``) fill the test columns of rows that
    stand for a bucket of steps (a decimated history): each such row takes the last evaluation inside its bucket,
    since its own last step seldom evaluated.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(len(steps), len(columns))
    index = {c: i for i, c in enumerate(columns)}
    head = HEAD[1:]
    params = [c for c in columns if c not in head]
    data = {"step": np.asarray(steps, dtype=np.int64)}
    nan = np.full(len(steps), np.nan)
    for c in head:
        data[c] = rows[:, index[c]] if c in index else nan
    data["clipped"] = data["clipped"] > 0 if "clipped" in index else np.zeros(len(steps), dtype=bool)
    for c in params:
        data[c] = rows[:, index[c]]
    df = pd.DataFrame(data, columns=[*HEAD, *params])
    _fill_evaluations(df, [e for e in evaluations if e.get("test_loss") is not None])
    return df


def _fill_evaluations(df, evals: list[dict]) -> None:
    steps = df["step"].to_numpy()
    if not evals or not len(steps):
        return
    at = np.searchsorted(steps, [e["step"] for e in evals])  # the row whose bucket holds the evaluation
    for i, e in reversed(list(zip(at, evals, strict=True))):  # newest first: a bucket keeps its last evaluation
        if i < len(steps) and np.isnan(df.at[i, "test_loss"]):
            df.at[i, "test_loss"], df.at[i, "test_accuracy"] = e["test_loss"], e["test_accuracy"]


def table_bytes(df, fmt: str) -> bytes:
    """The table as CSV (NaN as ``nan``) or Parquet bytes; ``fmt`` is "csv" or "parquet"."""
    if fmt == "parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    return _csv(df)


def _csv(df) -> bytes:
    """What ``df.to_csv(index=False, na_rep="nan")`` writes for this schema, ~5x faster.

    pandas formats ~1 µs a value, 55 µs a row of the reference MLP: 2% of the step the row records. Python's
    ``repr`` of a float is its shortest exact form (read back bit for bit), and writes nan, inf and -inf.
    """
    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(df.columns)
    cells = []
    for name in df.columns:
        values = df[name].to_numpy()
        if values.dtype == bool:
            cells.append(["True" if v else "False" for v in values.tolist()])
        elif values.dtype.kind in "iu":
            cells.append(list(map(str, values.tolist())))
        else:
            cells.append(list(map(repr, values.astype(np.float64).tolist())))
    lines = [",".join(r) for r in zip(*cells, strict=True)]
    return (head.getvalue() + "".join(line + "\n" for line in lines)).encode()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".events.json")


def sidecar(config: dict, status: str, events: list[dict], **extra) -> dict:
    """The events file's content: config, final status, what ``test_accuracy`` means and the events, strict JSON."""
    return finite({"config": config, "status": status, **extra,
                   "test_accuracy": accuracy_meaning(str(config.get("dataset"))), "events": events})


def check_destination(path: Path, flag: str = "--out") -> None:
    """Raise ValueError (one line, naming ``flag``) unless ``path`` and its sidecar can be written: a .csv or
    .parquet name, in a folder that exists and is writable, that is not itself a folder or a device, and not in
    /proc or /sys. Checked before training, so a run never trains to the end and then cannot be saved."""
    if path.suffix not in FORMATS:
        raise ValueError(f"{flag}: {str(path)!r} must end in .csv or .parquet")
    real = Path(os.path.realpath(path))
    if real.parts[1:2] in (("proc",), ("sys",), ("dev",)):
        raise ValueError(f"{flag}: {path} is in {'/'.join(real.parts[:2])}, not a place for files")
    if path.is_dir() or real.is_dir():
        raise ValueError(f"{flag}: {path} is a folder; give a file name ending in .csv or .parquet")
    if real.exists() and not real.is_file():
        raise ValueError(f"{flag}: {path} is not a regular file (a device or a pipe); give a file name")
    folder = real.parent
    if not folder.is_dir():
        raise ValueError(f"{flag}: the folder {path.parent} does not exist")
    for p in (path, sidecar_path(path)):
        if os.path.lexists(p) and not os.access(p, os.W_OK):
            raise ValueError(f"{flag}: {p} cannot be overwritten (no write permission)")
    try:  # the only sure test that the folder takes new files (permissions, a read-only mount, ACLs)
        fd, probe = tempfile.mkstemp(prefix=".gel-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{flag}: cannot write in {path.parent} ({e.strerror or e})") from None


def write(path: Path, df, side: dict) -> Path:
    """Write the table to ``path`` and ``side`` to its sidecar, both or neither; return the sidecar's path.
    Raises OSError with the reason (see ``write_files``)."""
    path = Path(path)
    fmt = "parquet" if path.suffix == ".parquet" else "csv"
    side_path = sidecar_path(path)
    write_files([(side_path, json.dumps(side, indent=1, allow_nan=False).encode()), (path, table_bytes(df, fmt))])
    return side_path


def write_run(path: Path, steps, columns: Sequence[str], rows: np.ndarray, config: dict, status: str,
              events: list[dict], **extra) -> Path:
    """A run's table (``frame``) and its events file (``sidecar``, with ``extra`` fields and ``clipped_share``, the
    share of its steps on which clipping changed the gradients) to ``path``, both or neither; returns the
    sidecar's path. Every export of a run to a file comes through here."""
    df = frame(steps, columns, rows)
    share = clipped_share(int(df["clipped"].sum()), len(df))
    return write(path, df, sidecar(config, status, events, clipped_share=share, **extra))


def write_files(files: list[tuple[Path, bytes]]) -> None:
    """Write several files as one: each to a temporary file in its folder, then all renamed into place.

    A failure while writing (disk full, a file size limit) removes the temporary files and leaves the old files
    as they were. The renames come last, the main file last of all: should one fail, the files already renamed
    are removed, so a sidecar never sits beside a table it does not describe. Raises OSError.
    """
    temps: list[str] = []
    done: list[Path] = []
    try:
        for target, data in files:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for (target, _), tmp in zip(files, temps, strict=True):
            os.replace(tmp, target)
            done.append(target)
    except BaseException:
        for target in done if len(done) < len(files) else []:
            try:
                os.unlink(target)
            except OSError:
                pass
        raise
    finally:
        for tmp in temps:
            try:
                os.unlink(tmp)
            except OSError:  # already renamed into place
                pass


def finite(o):
    """NaN and inf as None, numpy scalars as Python numbers: strict JSON (files, saved maps' metadata)."""
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    if o is None or isinstance(o, (bool, int, str)):
        return o
    return finite(plain(o))


def plain(o):
    """numpy integers, floats and arrays as Python numbers and lists, anything else as its text: ``finite``'s
    last step, and ``json.dumps``'s ``default`` where NaN and inf are kept (the store's events)."""
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
