"""Where a stability map's cells run: ``serial`` (this process), ``local`` (a process pool over all cores, the
default) or ``ray`` (Ray tasks; on a cluster with ``address``). Every cell runs on one torch thread (the thread
count changes the order of float sums), so each backend gives the same map, to the bit.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import torch

from .cells import Cell, CellResult, Rule, run_cell
from .config import Config

BACKENDS = ("local", "serial", "ray")  # the CLI offers all three; ray says how to install it when it is missing
WORKER_BYTES = 512 * 2**20  # a spawned worker with torch and a cell: ~460 MB resident, ~340 MB its own (measured)


def backends() -> list[str]:
    """The backends that can run here: ray only where it is installed."""
    return [b for b in BACKENDS if b != "ray" or importlib.util.find_spec("ray") is not None]


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


def one_thread() -> None:
    torch.set_num_threads(1)  # one cell per core: threads inside a cell would only fight the other workers


def _worker_start() -> None:
    """Each local worker: one torch thread, and a watcher that ends the worker when the sweep's process dies.

    A worker otherwise waits on its task queue forever: it holds both ends of that pipe itself, so a parent
    killed with -9 leaves it (and the resource tracker it keeps open) alive. ``parent_process()`` is the
    spawned child's end of a pipe whose other end only the parent holds: it turns readable when the parent is
    gone, on Linux, macOS and Windows alike, with no polling.
    """
    one_thread()
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent,), name="sweep-parent-watch", daemon=True).start()


def _end_with(parent) -> None:
    parent.join()  # returns once the parent has exited, however it ended
    os._exit(1)  # its cell's result has nowhere to go


def _ray_cell(cell: Cell, cfg: Config, rule: Rule) -> CellResult:
    one_thread()
    return run_cell(cell, cfg, rule)


class LocalPool:
    """Cells on a process pool: spawned workers (safe with threads and torch), one torch thread each."""

    def __init__(self, workers: int | None):
        self.slots = workers or max_workers()[0]
        self.ex = ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_worker_start)

    def submit(self, cell, cfg, rule):
        return self.ex.submit(run_cell, cell, cfg, rule)

    def wait(self, running, timeout):
        return wait(running, timeout=timeout, return_when=FIRST_COMPLETED).done if running else set()

    def result(self, fut):
        return fut.result()

    def close(self, running):
        self.ex.shutdown(wait=False, cancel_futures=True)  # a cell already running finishes in its worker, unread


class RayPool:
    """Cells as Ray tasks, one CPU each. Connects to ``address`` (a cluster) or starts/uses a local Ray."""

    def __init__(self, address: str | None, workers: int | None):
        try:
            import ray  # optional (requirements-ray.txt): imported only when a sweep asks for it
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
