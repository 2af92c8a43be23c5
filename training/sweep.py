"""The stability map: a grid of two config axes x several seeds, one short run per cell, each run classified.

Axes are any numeric config field (``lr``, ``init_std``, ``clip_threshold``, ``batch_size``, ...) or ``depth``
(hidden layers of one width: ``hidden_sizes = (width,) * depth``). ``lr=1e-4:1:9`` is 9 values from 1e-4 to 1,
log-spaced when the range is positive and spans more than one decade, else linear; ``log:``/``lin:`` before the
range forces a spacing, and ``lr=0.01,0.1,1`` lists values. Integer fields round and drop duplicates.

Each cell is classified by the one outcome classifier of the lab (``training/outcome.py``, which defines
exploded, learned, vanished and stuck and says why each threshold is where it is), from its per-step losses, its
first non-finite step and its backward-signal ratio at initialisation. A cell whose loss is huge at step 0 (the
forward pass blown up at init) and then falls is classified by what it did next, not marked exploded.

Every cell is one ``Trainer`` seeded by its config alone (no global RNG), on one CPU thread (the thread count
changes the order of float sums), so a sweep gives the same map, to the bit, on every backend: ``serial`` (this
process, pinned to one thread while it runs), ``local`` (a process pool over all cores, the default) or ``ray``
(Ray tasks; on a cluster with ``address``). Results stream as cells finish.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from . import outcome as O
from . import registry as R
from .config import FIELDS, MAX_DEPTH, Config, ConfigError, allowed_text
from .explain import critical_init_std  # the χ = 1 line, with the rest of the theory

OUTCOMES = O.OUTCOMES  # code = index; -1 marks a cell not run yet
SEVERITY = ("exploded", "vanished", "stuck", "learned")  # a tied majority goes to the first of these
DEFAULT_STEPS = 200
DEFAULT_WIDTH = 128
MAX_CELLS = 4096  # 64 x 64, or 32 x 32 x 4 seeds; a larger map is more than a dashboard shows
MAX_AXIS_VALUES = 64
NO_PROBE = 100_000  # probe_every: the engine then probes step 0 only, which is where the signal ratio comes from
BACKENDS = ("local", "ray", "serial")
META_KEY = b"gel_sweep"
FORMAT = "gel-sweep/1"

INT_AXES = {name for name, f in FIELDS.items() if f.type in ("int", int)} - {"seed", "probe_every"} | {"depth"}
FLOAT_AXES = {name for name, f in FIELDS.items() if f.type in ("float", float)}
AXES = sorted(INT_AXES | FLOAT_AXES)

# Axes that change nothing unless the base config uses them: a uniform map is a confusing way to learn that.
_NEEDS = {
    "init_std": (lambda c: c.init == "normal", "init_std only changes the network with --init normal"),
    "spectral_radius": (lambda c: c.init == "spectral_radius",
                        "spectral_radius only changes the network with --init spectral_radius"),
    "momentum": (lambda c: c.optimizer == "momentum", "momentum only matters with --optimizer momentum"),
    "clip_threshold": (lambda c: c.clip != "none", "clip_threshold only matters with --clip norm or value"),
    "hidden_size": (lambda c: c.is_recurrent, "hidden_size applies to rnn, lstm and gru; use depth for the mlp"),
    "seq_len": (lambda c: c.dataset in R.SEQUENCE_DATASETS, "seq_len only matters for the sequence datasets"),
    "depth": (lambda c: c.model == "mlp", "depth applies to the mlp model; use hidden_size for recurrent nets"),
}


# Axes that need a setting to mean anything, and the setting a sweep turns on when the user did not choose one.
IMPLIED = {"init_std": ("init", "normal"), "spectral_radius": ("init", "spectral_radius"),
           "momentum": ("optimizer", "momentum"), "clip_threshold": ("clip", "norm")}


class AxisError(ValueError):
    """A bad axis, said in one line that starts with the axis as written."""


class CellError(RuntimeError):
    """A cell's run raised: the message names the cell (axes and seed) and the error; the sweep stops."""


# ---- axes ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple  # ints for integer fields and depth, floats otherwise; ascending, distinct
    scale: str  # "log", "lin" or "list"
    spec: str  # as written, for the metadata and the CLI echo

    @property
    def is_int(self) -> bool:
        return self.name in INT_AXES


def _limits(name: str) -> tuple[float, float, str]:
    if name == "depth":
        return 1, MAX_DEPTH, f"allowed: 1 to {MAX_DEPTH} hidden layers"
    f = FIELDS[name]
    return f.metadata["lo"], f.metadata["hi"], allowed_text(f)


def _number(text: str, what: str, spec: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise AxisError(f"{spec}: {what} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise AxisError(f"{spec}: {what} {text!r} is not a finite number")
    return v


def parse_axis(spec: str) -> Axis:
    """``name=lo:hi:n``, ``name=log:lo:hi:n``, ``name=lin:lo:hi:n``, ``name=v1,v2,...`` or ``name=v`` → Axis."""
    spec = spec.strip()
    name, sep, rng = spec.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not rng.strip():
        raise AxisError(f"{spec or '(empty)'}: expected name=lo:hi:n, e.g. lr=1e-4:1:9")
    if name not in AXES:
        raise AxisError(f"{spec}: {name!r} is not a numeric config field; axes: {', '.join(AXES)}")
    rng = rng.strip()
    m = re.fullmatch(r"(log|lin):(.*)", rng)
    forced = m.group(1) if m else None
    rng = m.group(2) if m else rng
    if "," in rng or ":" not in rng:  # a list, or one value
        if forced:
            raise AxisError(f"{spec}: log:/lin: go with a range lo:hi:n, not a list")
        vals = [_number(p.strip(), "value", spec) for p in rng.split(",") if p.strip()]
        scale = "list"
    else:
        parts = rng.split(":")
        if len(parts) != 3:
            raise AxisError(f"{spec}: expected lo:hi:n (three parts), got {len(parts)}")
        lo, hi = _number(parts[0], "lo", spec), _number(parts[1], "hi", spec)
        n = _number(parts[2], "n", spec)
        if not n.is_integer() or not 1 <= n <= MAX_AXIS_VALUES:
            raise AxisError(f"{spec}: n must be a whole number from 1 to {MAX_AXIS_VALUES}")
        if lo > hi:
            raise AxisError(f"{spec}: lo {lo:g} is above hi {hi:g}")
        scale = forced or ("log" if lo > 0 and hi / lo > 10 else "lin")
        if scale == "log" and lo <= 0:
            raise AxisError(f"{spec}: a log axis needs lo > 0")
        space = np.geomspace if scale == "log" else np.linspace
        vals = [lo] if n == 1 else space(lo, hi, int(n)).tolist()
    if name in INT_AXES:
        vals = [int(round(v)) for v in vals]
    else:
        vals = [float(f"{v:.6g}") for v in vals]  # 0.000316228, not 0.00031622776601683794: readable in a URL
    vals = sorted(set(vals))
    if not vals:
        raise AxisError(f"{spec}: no values")
    lo_ok, hi_ok, allowed = _limits(name)
    bad = [v for v in vals if not lo_ok <= v <= hi_ok]
    if bad:
        raise AxisError(f"{spec}: {name} = {bad[0]:g} is out of range; {allowed}")
    return Axis(name, tuple(vals), scale, spec)


def implied(base: Config, axes: Iterable[str], chosen: Iterable[str] = ()) -> dict:
    """Changes that make ``axes`` matter, for fields not in ``chosen`` (e.g. an init_std axis → init normal)."""
    return {k: v for a in axes if a in IMPLIED for k, v in [IMPLIED[a]]
            if k not in set(chosen) and getattr(base, k) != v}


# ---- classification -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule(O.Rule):
    """The map's thresholds: those of the outcome classifier (training/outcome.py), saved with each sweep."""

    def classify(self, losses: Sequence[float], grad_norms: Sequence[float], signal_ratio: float,
                 zero_loss: float, const_loss: float) -> tuple[str, str]:
        """(outcome, reason) from one run's per-step losses and pre-clip gradient norms (a non-finite norm marks
        a non-finite gradient: the engine's norms of finite gradients are always finite)."""
        finite = np.isfinite(np.asarray(losses, dtype=float)) & np.isfinite(np.asarray(grad_norms, dtype=float))
        o = O.classify_losses(losses, zero_loss, const_loss, signal_ratio, finite, self)
        return o.label, o.reason


reference_losses = O.reference_losses


# ---- one cell -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    x: float
    y: float
    seed: int


@dataclass
class CellResult:
    x: float
    y: float
    seed: int
    outcome: str
    reason: str
    initial_loss: float
    final_loss: float  # mean of the last steps (Rule.final_window); NaN when the run went non-finite
    max_grad_norm: float  # pre-clip, over the run
    first_grad_norm: float  # weight-gradient norm of the first layer (rnn: input weights), step 0
    last_grad_norm: float  # weight-gradient norm of the output layer, step 0
    signal_ratio: float  # ||dL/dh_first|| / ||dL/dh_last|| at step 0: what "vanished" reads
    steps_run: int
    seconds: float

    @property
    def code(self) -> int:
        return OUTCOMES.index(self.outcome)


COLUMNS = [f.name for f in fields(CellResult)]


def run_cell(cell: Cell, cfg: Config, rule: Rule) -> CellResult:
    """Train ``cfg`` synchronously and classify it. Stops at the first non-finite step (the engine rolls it back)."""
    from .engine import Trainer

    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    zero_loss, const_loss = trainer.references
    weights = [i for i, p in enumerate(trainer.params) if p.dim() >= 2]
    losses, norms, first = [], [], None
    for _ in range(cfg.steps):
        rec = trainer.step()
        if first is None:
            first = rec
        losses.append(rec.loss)
        norms.append(rec.grad_norm_pre_clip)
        if not rec.applied:
            break
    ratio = O.signal_ratio(first.probe)
    outcome, reason = rule.classify(losses, norms, ratio, zero_loss, const_loss)
    finite = bool(np.isfinite(losses).all() and np.isfinite(norms).all())
    return CellResult(
        x=cell.x, y=cell.y, seed=cell.seed, outcome=outcome, reason=reason, initial_loss=float(losses[0]),
        final_loss=float(np.mean(losses[-rule.final_window:])) if finite else float("nan"),
        max_grad_norm=float(np.max(norms)) if finite else float("inf"),
        first_grad_norm=float(first.grad_norms[weights[0]]), last_grad_norm=float(first.grad_norms[weights[-1]]),
        signal_ratio=ratio, steps_run=len(losses), seconds=time.perf_counter() - t0)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # one cell per core: threads inside a cell would only fight the other workers


def _worker_start() -> None:
    """Each local worker: one torch thread, and a watcher that ends the worker when the sweep's process dies.

    A worker otherwise waits on its task queue forever: it holds both ends of that pipe itself, so a parent
    killed with -9 leaves it (and the resource tracker it keeps open) alive. ``parent_process()`` is the
    spawned child's end of a pipe whose other end only the parent holds: it turns readable when the parent is
    gone, on Linux, macOS and Windows alike, with no polling.
    """
    import multiprocessing

    _one_thread()
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent,), name="sweep-parent-watch", daemon=True).start()


def _end_with(parent) -> None:
    parent.join()  # returns once the parent has exited, however it ended
    os._exit(1)  # its cell's result has nowhere to go


def _ray_cell(cell: Cell, cfg: Config, rule: Rule) -> CellResult:
    _one_thread()
    return run_cell(cell, cfg, rule)


# ---- the sweep ----------------------------------------------------------------------------------------------------

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
            if ax.name in _NEEDS and not _NEEDS[ax.name][0](base):
                raise AxisError(f"{ax.spec}: {_NEEDS[ax.name][1]}")
        self.cells = [Cell(xv, yv, base.seed + s) for yv in self.y.values for xv in self.x.values
                      for s in range(seeds)]
        self._configs = {c: self._build(c) for c in self.cells}  # every cell validated before anything runs
        self._cancel = threading.Event()

    def _axis_changes(self, ax: Axis, v) -> dict:
        return {"hidden_sizes": (self.width,) * int(v)} if ax.name == "depth" else {ax.name: v}

    def _build(self, cell: Cell) -> Config:
        changes = {**self._axis_changes(self.x, cell.x), **self._axis_changes(self.y, cell.y)}
        try:
            return self.base.replace(**changes, seed=cell.seed, steps=self.steps, probe_every=NO_PROBE,
                                     device="cpu")  # many small nets: a core each beats sharing one GPU
        except ConfigError as e:
            raise AxisError(f"at {self.x.name}={cell.x:g}, {self.y.name}={cell.y:g}: {e}") from None

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
        pool = _LocalPool(workers) if backend == "local" else _RayPool(address, workers)
        return self._drive(pool)

    def _serial(self) -> Iterator[CellResult]:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in the workers (see the module docstring)
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

    def _where(self, cell: Cell) -> str:
        return f"cell {self.x.name}={cell.x:g}, {self.y.name}={cell.y:g}, seed={cell.seed}"

    def metadata(self, backend: str | None = None, complete: bool | None = None, seconds: float | None = None
                 ) -> dict:
        axis = lambda a: {**asdict(a), "values": list(a.values)}  # noqa: E731 (as JSON gives it back)
        return {"format": FORMAT, "x": axis(self.x), "y": axis(self.y), "seeds": self.seeds,
                "steps": self.steps, "width": self.width, "outcomes": list(OUTCOMES),
                "rule": {**asdict(self.rule), "text": self.rule.text()}, "base_config": self.base.to_dict(),
                "backend": backend, "complete": complete, "seconds": seconds}

    @classmethod
    def from_metadata(cls, meta: dict) -> Sweep:
        """Rebuild a saved sweep (to open a cell's config, or to run it again)."""
        from .config import from_dict

        ax = lambda d: Axis(d["name"], tuple(d["values"]), d["scale"], d["spec"])  # noqa: E731 (JSON list → tuple)
        known = {f.name for f in fields(Rule)}  # a sweep saved under older thresholds keeps only current ones
        rule = Rule(**{k: v for k, v in meta["rule"].items() if k in known})
        return cls(from_dict(meta["base_config"]), ax(meta["x"]), ax(meta["y"]), meta["seeds"], meta["steps"],
                   meta["width"], rule)


WORKER_BYTES = 512 * 2**20  # a spawned worker with torch and a cell: ~460 MB resident, ~340 MB its own (measured)


class WorkersError(ValueError):
    """A worker count out of range, in one line that names the field, the range and why."""


def max_workers() -> tuple[int, str]:
    """(the most local workers this machine holds, why): one per CPU this process may use, and no more than
    the memory available at ``WORKER_BYTES`` each (a 12-worker pool on 2 cores took 5.9 GB and ran no faster)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    free = _available_memory()
    if free is None:
        return cpus, f"{cpus} CPU cores"
    return max(1, min(cpus, free // WORKER_BYTES)), (f"{cpus} CPU cores, {free / 2**30:.1f} GiB of memory "
                                                     f"available at {WORKER_BYTES / 2**30:.1f} GiB a worker")


def _available_memory() -> int | None:
    """Bytes this process may still use: Linux's MemAvailable, less when a cgroup (a container) caps it lower;
    None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, min(found)) if found else None


def check_workers(workers: int | None, backend: str = "local") -> None:
    """WorkersError unless ``workers`` is None (the default: ``max_workers``) or 1 to ``max_workers`` for the
    local pool (Ray's own scheduler bounds a cluster: 1 or more)."""
    if workers is None:
        return
    if backend == "local":
        hi, why = max_workers()
        if not (isinstance(workers, int) and 1 <= workers <= hi):
            raise WorkersError(f"workers: {workers} is not allowed; allowed: 1 to {hi} here ({why})")
    elif not (isinstance(workers, int) and workers >= 1):
        raise WorkersError(f"workers: {workers} is not allowed; allowed: 1 or more")


class _LocalPool:
    """Cells on a process pool: spawned workers (safe with threads and torch), one torch thread each."""

    def __init__(self, workers: int | None):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.slots = workers or max_workers()[0]
        self.ex = ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_worker_start)

    def submit(self, cell, cfg, rule):
        return self.ex.submit(run_cell, cell, cfg, rule)

    def wait(self, running, timeout):
        from concurrent.futures import FIRST_COMPLETED, wait

        return wait(running, timeout=timeout, return_when=FIRST_COMPLETED).done if running else set()

    def result(self, fut):
        return fut.result()

    def close(self, running):
        self.ex.shutdown(wait=False, cancel_futures=True)  # a cell already running finishes in its worker, unread


class _RayPool:
    """Cells as Ray tasks, one CPU each. Connects to ``address`` (a cluster) or starts/uses a local Ray."""

    def __init__(self, address: str | None, workers: int | None):
        try:
            import ray
        except ImportError:
            raise RuntimeError("backend ray needs Ray: pip install -r requirements-ray.txt") from None
        self.ray = ray
        if not ray.is_initialized():
            # On a cluster the workers need this package: ship it. A local Ray finds it on the driver's path.
            env = {"py_modules": [str(Path(__file__).resolve().parent)]} if address else None
            # No --address: always a fresh local Ray, never whatever cluster a stale address file points at.
            ray.init(address=address or "local", runtime_env=env, include_dashboard=False, log_to_driver=False)
        self.slots = max(1, workers or int(ray.cluster_resources().get("CPU", 1)))
        self.task = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)

    def submit(self, cell, cfg, rule):
        return self.task.remote(cell, cfg, rule)

    def wait(self, running, timeout):
        if not running:
            return []
        ready, _ = self.ray.wait(list(running), num_returns=len(running), timeout=timeout)
        return ready

    def result(self, ref):
        return self.ray.get(ref)

    def close(self, running):
        for ref in running:
            self.ray.cancel(ref)


# ---- results as plain data ----------------------------------------------------------------------------------------

def majority(outcomes: Iterable[str]) -> str | None:
    """Most common outcome; a tie goes to the more severe one (exploded, vanished, stuck, learned)."""
    counts = Counter(outcomes)
    if not counts:
        return None
    top = max(counts.values())
    return next(o for o in SEVERITY if counts.get(o) == top)


def outcome_grid(results, xs: Sequence[float] | None = None, ys: Sequence[float] | None = None):
    """(xs, ys, codes, counts) for a heatmap: ``codes[j, i]`` is the majority outcome code (OUTCOMES index, -1 where
    no seed has finished) at x = xs[i], y = ys[j]; ``counts[j, i, k]`` counts seeds with outcome OUTCOMES[k].

    ``results`` is an iterable of CellResult or a DataFrame with x, y and outcome columns; ``xs``/``ys`` default to
    the values present (pass the sweep's axes to draw a partial map at its final size).
    """
    rows = results.to_dict("records") if hasattr(results, "to_dict") else [asdict(r) for r in results]
    xs = sorted({r["x"] for r in rows}) if xs is None else list(xs)  # ints stay ints (depth, batch size)
    ys = sorted({r["y"] for r in rows}) if ys is None else list(ys)
    xi, yi = {float(v): i for i, v in enumerate(xs)}, {float(v): j for j, v in enumerate(ys)}
    counts = np.zeros((len(ys), len(xs), len(OUTCOMES)), dtype=int)
    for r in rows:
        counts[yi[float(r["y"])], xi[float(r["x"])], OUTCOMES.index(r["outcome"])] += 1
    codes = np.full((len(ys), len(xs)), -1, dtype=int)
    for j, i in zip(*np.nonzero(counts.sum(axis=2)), strict=True):
        codes[j, i] = OUTCOMES.index(majority(Counter({o: counts[j, i, k] for k, o in enumerate(OUTCOMES)})
                                              .elements()))
    return xs, ys, codes, counts


def to_frame(results: Iterable[CellResult]):
    """One row per (x, y, seed), sorted, with ``majority``: the (x, y) cell's majority outcome over its seeds."""
    import pandas as pd

    df = pd.DataFrame([asdict(r) for r in results], columns=COLUMNS)
    df = df.sort_values(["y", "x", "seed"], kind="stable").reset_index(drop=True)
    df["majority"] = df.groupby(["x", "y"])["outcome"].transform(majority) if len(df) else pd.Series(dtype=str)
    return df


def save(path: str | Path, results: Iterable[CellResult], meta: dict) -> Path:
    """Parquet with the metadata in the schema (key ``gel_sweep``), or CSV with a ``FILE.sweep.json`` sidecar.

    The axis columns carry their field names (``lr``, ``depth``, ...), not ``x`` and ``y``; the metadata says
    which is which. The file (and its sidecar) are written whole or not at all (``export.write_files``)."""
    from . import export

    path = Path(path)
    df = to_frame(results)
    names = (meta["x"]["name"], meta["y"]["name"])
    if names[0] != names[1]:
        df = df.rename(columns={"x": names[0], "y": names[1]})
    text = json.dumps(meta, default=_json_default)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

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
    import pandas as pd

    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.to_pandas(), json.loads(table.schema.metadata[META_KEY])
    return pd.read_csv(path), json.loads(path.with_name(path.name + ".sweep.json").read_text())


SWEEPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY, label TEXT NOT NULL, created REAL NOT NULL, meta_json TEXT NOT NULL,
    cells_json TEXT NOT NULL, n_cells INTEGER NOT NULL, complete INTEGER NOT NULL
);
"""


def store_path(store: str | Path | None = None) -> Path:
    """The run store's SQLite file: ``store`` if it names one, else DIR/runs.sqlite3 (default $GEL_DATA_DIR, ./data).

    Sweeps live in their own ``sweeps`` table of the same file, so one folder holds runs and maps.
    """
    from .store import DB_NAME, default_data_dir

    p = Path(store) if store else default_data_dir()
    return p if p.suffix in (".sqlite3", ".sqlite", ".db") else p / DB_NAME


def _connect(path: Path):
    import sqlite3

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")  # as the run store: readers never block its writer
    conn.executescript(SWEEPS_SCHEMA)
    return conn


@contextmanager
def _sweeps(store: str | Path | None) -> Iterator:
    """A connection to the store's sweeps table; StoreError, in one line, when the file cannot be used."""
    import sqlite3

    from .store import StoreError

    path = store_path(store)
    try:
        conn = _connect(path)
        try:
            yield conn
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as e:
        raise StoreError(f"cannot use the sweeps in the run store at {path}: {e}") from None


def save_to_store(results: Iterable[CellResult], meta: dict, label: str = "", store: str | Path | None = None
                  ) -> str:
    """Save a sweep (finished or cancelled: ``meta["complete"]`` says which) in the store; returns its id."""
    rows = [asdict(r) for r in results]
    sweep_id = uuid.uuid4().hex[:12]
    label = label or f"{meta['x']['spec']} x {meta['y']['spec']}"
    with _sweeps(store) as conn:
        conn.execute("INSERT INTO sweeps (id, label, created, meta_json, cells_json, n_cells, complete) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (sweep_id, label, time.time(), json.dumps(meta, default=_json_default), json.dumps(rows),
                      len(rows), int(bool(meta.get("complete")))))
    return sweep_id


def list_stored(store: str | Path | None = None) -> list[dict]:
    """Saved sweeps, newest first: id, label, created (Unix s), x and y (axis specs), cells, complete."""
    if not store_path(store).exists():
        return []
    with _sweeps(store) as conn:
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


def load_stored(sweep_id: str, store: str | Path | None = None):
    """(DataFrame as ``to_frame``, metadata) of a stored sweep; KeyError when there is none with this id."""
    with _sweeps(store) as conn:
        row = conn.execute("SELECT meta_json, cells_json FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
    if row is None:
        raise KeyError(f"no stored sweep {sweep_id!r}")
    return to_frame(CellResult(**r) for r in json.loads(row[1])), json.loads(row[0])


def delete_stored(sweep_id: str, store: str | Path | None = None) -> bool:
    """Remove a stored sweep; False when there was none with this id."""
    with _sweeps(store) as conn:
        return conn.execute("DELETE FROM sweeps WHERE id = ?", (sweep_id,)).rowcount > 0


def _json_default(o):
    if isinstance(o, (np.floating, float)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return str(o)


# ---- theory's chi = 1 line ----------------------------------------------------------------------------------------

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
    apply (another init, normalisation or skips, a recurrent net, no init_std axis). The other axis may be anything
    that leaves the per-layer weight variance alone (depth, lr, batch size, ...): the line is straight across it.

    The fan-in is ``width`` with a depth axis, else the middle layer's (as in ``theory.mlp_prediction``).
    """
    names = (x_axis.name, y_axis.name)
    if ("init_std" not in names or base_cfg.model != "mlp" or base_cfg.init != "normal" or base_cfg.norm != "none"
            or base_cfg.residual):
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
