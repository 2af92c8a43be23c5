"""The stability map: a grid of two config axes x several seeds, one short run per cell, each run classified.

Axes (``training/axes.py``) are any numeric, true/false or choice config field, or ``depth``; a cell
(``training/cells.py``) is one ``Trainer`` seeded by its config alone (no global RNG), classified by the lab's one
outcome classifier; the cells run on a backend (``training/pools.py``): ``serial``, ``local`` (a process pool, the
default) or ``ray``, and give the same map, to the bit, on each. Results stream as cells finish. A sweep is saved to
a file here, or in the run store (``Store.save_sweep``).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from . import export
from . import registry as R
from .axes import AXES, Axis, AxisError, check_applies, implied, parse_axis
from .axes import from_dict as axis_from_dict
from .cells import COLUMNS, OUTCOMES, Cell, CellResult, Rule, majority, outcome_grid, run_cell, to_frame
from .config import FIELDS, Config, ConfigError, from_dict
from .explain import critical_init_std  # the χ = 1 line, with the rest of the theory
from .pools import BACKENDS, LocalPool, RayPool, WorkersError, backends, check_workers, max_workers, one_thread
from .store import Store, StoreError, db_path

__all__ = ["AXES", "BACKENDS", "COLUMNS", "OUTCOMES", "Axis", "AxisError", "Cell", "CellError", "CellResult",
           "CriticalLine", "Rule", "Sweep", "WorkersError", "backends", "check_workers", "critical_init_std",
           "critical_line", "delete_stored", "implied", "list_stored", "load", "load_stored", "majority",
           "max_workers", "outcome_grid", "parse_axis", "run_cell", "save", "save_to_store",
           "store_path", "to_frame"]

DEFAULT_STEPS = 200
DEFAULT_WIDTH = 128
MAX_CELLS = 4096  # 64 x 64, or 32 x 32 x 4 seeds; a larger map is more than a dashboard shows
NO_PROBE = 100_000  # probe_every: the engine then probes step 0 only, which is where the signal ratio comes from
META_KEY = b"gel_sweep"
FORMAT = "gel-sweep/1"
# Axes that change the forward net the χ = 1 line is worked out for: with one of them there is no single line.
NET_AXES = {"model", "dataset", "activation", "init", "norm", "residual"}


class CellError(RuntimeError):
    """A cell's run raised: the message names the cell (axes and seed) and the error; the sweep stops."""


class Sweep:
    """A grid of cells. ``run()`` yields a CellResult per cell as it finishes; ``cancel()`` (any thread) stops it."""

    def __init__(self, base: Config, x: Axis | str, y: Axis | str, seeds: int = 1, steps: int = DEFAULT_STEPS,
                 width: int = DEFAULT_WIDTH, rule: Rule | None = None):
        self.x = parse_axis(x) if isinstance(x, str) else x
        self.y = parse_axis(y) if isinstance(y, str) else y
        if self.x.name == self.y.name:
            raise AxisError(f"{self.y.spec}: x and y are both {self.x.name}; pick two different fields")
        if not 1 <= seeds <= 100:
            raise AxisError(f"seeds: {seeds} is not allowed; 1 to 100")
        if "depth" in (self.x.name, self.y.name) and not 1 <= width <= FIELDS["hidden_sizes"].metadata["hi"]:
            raise AxisError(f"width: {width} is not allowed; 1 to {FIELDS['hidden_sizes'].metadata['hi']}")
        n = len(self.x.values) * len(self.y.values) * seeds
        if n > MAX_CELLS:
            raise AxisError(f"{self.x.spec} x {self.y.spec} x {seeds} seeds is {n} cells; the cap is {MAX_CELLS}")
        self.base, self.seeds, self.steps, self.width = base, seeds, steps, width
        self.rule = rule or Rule()
        for ax in (self.x, self.y):
            check_applies(ax, base)
        self.cells = [Cell(xv, yv, base.seed + s) for yv in self.y.values for xv in self.x.values
                      for s in range(seeds)]
        self._configs = {c: self._build(c) for c in self.cells}  # every cell validated before anything runs
        self._cancel = threading.Event()

    def _axis_changes(self, ax: Axis, v) -> dict:
        return {"hidden_sizes": (self.width,) * int(v)} if ax.name == "depth" else {ax.name: ax.value(v)}

    def _build(self, cell: Cell) -> Config:
        changes = {**self._axis_changes(self.x, cell.x), **self._axis_changes(self.y, cell.y)}
        try:
            return self.base.replace(**changes, seed=cell.seed, steps=self.steps, probe_every=NO_PROBE,
                                     device="cpu")  # many small nets: a core each beats sharing one GPU
        except ConfigError as e:
            raise AxisError(f"at {self._at(cell)}: {e}") from None

    def config(self, x: float, y: float, seed: int | None = None) -> Config:
        """The cell's config to open as a normal run (the base's device and probing, the sweep's step count)."""
        cfg = self._configs[Cell(x, y, self.base.seed if seed is None else seed)]
        return cfg.replace(probe_every=self.base.probe_every, device=self.base.device)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self, backend: str = "local", workers: int | None = None, address: str | None = None
            ) -> Iterator[CellResult]:
        """Yield results in finishing order. Closing the iterator or ``cancel()`` cancels what has not started."""
        if backend not in BACKENDS:
            raise ValueError(f"backend: {backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
        check_workers(workers, backend)
        if backend == "serial":
            return self._serial()
        pool = LocalPool(workers) if backend == "local" else RayPool(address, workers)
        return self._drive(pool)

    def _serial(self) -> Iterator[CellResult]:
        threads = torch.get_num_threads()
        one_thread()  # as in the workers: the thread count changes the order of float sums
        try:
            for cell in self.cells:
                if self.cancelled:
                    return
                try:
                    result = run_cell(cell, self._configs[cell], self.rule)
                except Exception as e:
                    raise CellError(f"{self._where(cell)}: {type(e).__name__}: {e}") from e
                yield result
        finally:
            torch.set_num_threads(threads)

    def _drive(self, pool) -> Iterator[CellResult]:
        todo, running = deque(self.cells), {}
        try:
            while todo or running:
                # A bounded queue: cancel() then has little to take back, and the first cells start at once.
                while todo and len(running) < 2 * pool.slots and not self.cancelled:
                    cell = todo.popleft()
                    running[pool.submit(cell, self._configs[cell], self.rule)] = cell
                if self.cancelled:
                    return
                for handle in pool.wait(list(running), timeout=0.1):  # short: a cancel() is seen within 0.1 s
                    cell = running.pop(handle)
                    try:
                        result = pool.result(handle)
                    except Exception as e:
                        raise CellError(f"{self._where(cell)}: {type(e).__name__}: {e}") from e
                    yield result
        finally:
            pool.close(list(running))

    def _at(self, cell: Cell) -> str:
        return f"{self.x.name}={self.x.label(cell.x)}, {self.y.name}={self.y.label(cell.y)}"

    def _where(self, cell: Cell) -> str:
        return f"cell {self._at(cell)}, seed={cell.seed}"

    def metadata(self, backend: str | None = None, complete: bool | None = None, seconds: float | None = None
                 ) -> dict:
        axis = lambda a: {**asdict(a), "values": list(a.values), "words": list(a.words)}  # noqa: E731 (as JSON reads)
        return {"format": FORMAT, "x": axis(self.x), "y": axis(self.y), "seeds": self.seeds,
                "steps": self.steps, "width": self.width, "outcomes": list(OUTCOMES),
                "rule": {**asdict(self.rule), "text": self.rule.text()}, "base_config": self.base.to_dict(),
                "backend": backend, "complete": complete, "seconds": seconds}

    @classmethod
    def from_metadata(cls, meta: dict) -> Sweep:
        """Rebuild a saved sweep (to open a cell's config, or to run it again)."""
        known = {f.name for f in fields(Rule)}  # a sweep saved under older thresholds keeps only current ones
        rule = Rule(**{k: v for k, v in meta["rule"].items() if k in known})
        return cls(from_dict(meta["base_config"]), axis_from_dict(meta["x"]), axis_from_dict(meta["y"]),
                   meta["seeds"], meta["steps"], meta["width"], rule)


def save(path: str | Path, results: Iterable[CellResult], meta: dict) -> Path:
    """Parquet with the metadata in the schema (key ``gel_sweep``), or CSV with a ``FILE.sweep.json`` sidecar.

    The axis columns carry their field names (``lr``, ``depth``, ...), not ``x`` and ``y``, and a true/false or
    choice axis its words (``Axis.label``: false, true, post); the metadata says which is which and keeps each
    axis's values and words. The file (and its sidecar) are written whole or not at all (``export.write_files``)."""
    path = Path(path)
    df = to_frame(results)
    for col in ("x", "y"):
        axis = axis_from_dict(meta[col])
        if axis.words:
            df[col] = [axis.label(v) for v in df[col]]
    names = (meta["x"]["name"], meta["y"]["name"])
    if names[0] != names[1]:
        df = df.rename(columns={"x": names[0], "y": names[1]})
    text = json.dumps(export.finite(meta))
    if path.suffix == ".parquet":
        table = pa.Table.from_pandas(df, preserve_index=False)
        buf = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: text.encode()}),
                       buf)
        export.write_files([(path, buf.getvalue().to_pybytes())])
    elif path.suffix == ".csv":
        export.write_files([(path.with_name(path.name + ".sweep.json"), text.encode()),
                            (path, df.to_csv(index=False).encode())])
    else:
        raise ValueError(f"{path}: a sweep is saved as .parquet or .csv")
    return path


def load(path: str | Path):
    """(DataFrame, metadata) of a saved sweep, its columns as saved (the axes under their field names)."""
    path = Path(path)
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return table.to_pandas(), json.loads(table.schema.metadata[META_KEY])
    return pd.read_csv(path), json.loads(path.with_name(path.name + ".sweep.json").read_text())


def store_path(store: str | Path | None = None) -> Path:
    """The run store's SQLite file (``store``, a folder or a file; default $GEL_DATA_DIR, else ./data): maps are
    saved in its ``sweeps`` table, so one folder holds runs and maps."""
    return db_path(store or None)


@lru_cache(maxsize=8)
def _opened(path: Path) -> Store:
    """One Store a file for this process: opening checks the whole file, too slow for every draw of the page."""
    try:
        return Store(path)
    except StoreError as e:  # not cached: the next call tries again
        raise StoreError(f"cannot use the sweeps in the run store: {e}") from None


def save_to_store(results: Iterable[CellResult], meta: dict, label: str = "", store: str | Path | None = None
                  ) -> str:
    """Save a sweep (finished or cancelled: ``meta["complete"]`` says which) in the store; returns its id."""
    return _opened(store_path(store)).save_sweep([asdict(r) for r in results], meta, label)


def list_stored(store: str | Path | None = None) -> list[dict]:
    """Saved sweeps, newest first (``Store.list_sweeps``); none when there is no store yet."""
    path = store_path(store)
    return _opened(path).list_sweeps() if path.exists() else []


def load_stored(sweep_id: str, store: str | Path | None = None):
    """(DataFrame as ``to_frame``, metadata) of a stored sweep; KeyError when there is none with this id."""
    cells, meta = _opened(store_path(store)).load_sweep(sweep_id)
    return to_frame(CellResult(**r) for r in cells), meta


def delete_stored(sweep_id: str, store: str | Path | None = None) -> bool:
    """Remove a stored sweep; False when there was none with this id."""
    return _opened(store_path(store)).delete_sweep(sweep_id)


@dataclass(frozen=True)
class CriticalLine:
    """Where chi = 1 at the fixed point: init_std = ``value`` on axis ``axis``; ``xs``/``ys`` are the endpoints."""

    axis: str  # "x" or "y": the init_std axis
    value: float
    xs: tuple[float, float]
    ys: tuple[float, float]
    fan_in: int
    label: str = field(default="chi = 1 (edge of chaos)")


def critical_line(x_axis: Axis, y_axis: Axis, base_cfg: Config, width: int = DEFAULT_WIDTH) -> CriticalLine | None:
    """Theory's chi = 1 line, for an MLP with the ``normal`` init and init_std on one axis; None where it does not
    apply (another init, normalisation or skips, a recurrent net, no init_std axis, an axis of ``NET_AXES``). The
    other axis may be anything that leaves the per-layer weight variance alone (depth, lr, batch size, optimizer,
    ...): the line is straight across it.

    The fan-in is ``width`` with a depth axis, else the middle layer's (as in ``theory.mlp_prediction``).
    """
    names = (x_axis.name, y_axis.name)
    if ("init_std" not in names or base_cfg.model != "mlp" or base_cfg.init != "normal" or base_cfg.norm != "none"
            or base_cfg.residual or NET_AXES.intersection(names)):
        return None
    if "depth" in names:
        fan_in = width
    else:
        widths = (R.DATASET_DIMS[base_cfg.dataset][0], *base_cfg.hidden_sizes)  # the fan-ins of the linears
        fan_in = widths[len(widths) // 2]
    std = critical_init_std(base_cfg.activation, fan_in)
    if std is None:
        return None
    if x_axis.name == "init_std":
        return CriticalLine("x", std, (std, std), (y_axis.values[0], y_axis.values[-1]), fan_in)
    return CriticalLine("y", std, (x_axis.values[0], x_axis.values[-1]), (std, std), fan_in)
