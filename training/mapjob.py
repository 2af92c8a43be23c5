"""A stability-map sweep as a job of the run manager: one thread drives the sweep, the page reads copies.

The manager starts it (``RunManager.start_sweep``), counts its slots against the same cap as the runs, lists
its thread for the end-of-suite check and stops it with everything else. A sweep holds one slot per process
that trains its cells (``sweep_slots``): a local sweep gets as many workers as there are free slots, up to the
machine's ``max_workers``, so it no longer takes every core from the runs; a serial sweep trains on its own
thread (one slot) and a Ray sweep holds one slot for its driver, its tasks running where Ray puts them.
"""

from __future__ import annotations

import threading
import time

from . import sweep as SW
from .run import new_run_id
from .runner import track_thread


def sweep_slots(backend: str, free: int) -> int:
    """Slots a sweep on ``backend`` takes when ``free`` are free (0: none free, it cannot start)."""
    if free < 1:
        return 0
    return min(free, SW.max_workers()[0]) if backend == "local" else 1


class MapJob:
    """One sweep on a background thread. The thread only appends to ``results`` (under ``lock``) and sets the
    end fields (``error``, ``saved``, ``seconds``) before it ends; readers take ``snapshot()``. ``cancel()`` stops
    it between cells."""

    def __init__(self, sweep: SW.Sweep, backend: str, slots: int = 1):
        self.id = new_run_id("m")  # as unguessable as a run id: the page keeps only this
        self.sweep, self.backend, self.slots = sweep, backend, slots
        self.lock = threading.Lock()
        self.results: list[SW.CellResult] = []
        self.error: str | None = None
        self.saved: str | None = None  # "saved as <id>" or why it was not saved
        self.started = time.monotonic()
        self.seconds: float | None = None
        self._done = threading.Event()  # set when the thread has finished its work (alive until then)
        self.thread = track_thread(threading.Thread(target=self._work, name=f"sweep-{self.id}", daemon=True))

    def start(self) -> MapJob:
        self.thread.start()
        return self

    @property
    def alive(self) -> bool:
        """True from creation until the work is done: a job holds its slots before its thread runs."""
        return not self._done.is_set()

    def snapshot(self) -> list[SW.CellResult]:
        with self.lock:
            return list(self.results)

    def cancel(self) -> None:
        self.sweep.cancel()

    def stop(self, timeout: float = 10.0) -> bool:
        """Cancel and wait for the thread; True when it has ended. A job never started is simply done."""
        self.sweep.cancel()
        if self.thread.ident is None:
            self._done.set()
            return True
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _work(self) -> None:
        try:
            workers = self.slots if self.backend == "local" else None
            for result in self.sweep.run(self.backend, workers=workers):
                with self.lock:
                    self.results.append(result)
        except Exception as e:  # shown on the page; the map keeps what finished
            self.error = f"{type(e).__name__}: {e}"
        try:
            self.seconds = time.monotonic() - self.started
            self._save()
        finally:
            self._done.set()

    def _save(self) -> None:
        results = self.snapshot()
        complete = len(results) == len(self.sweep.cells)
        if not results:
            self.saved = "nothing to save: no cell finished"
            return
        try:
            sid = SW.save_to_store(results, self.sweep.metadata(self.backend, complete, self.seconds))
            self.saved = f"saved as {sid}" + ("" if complete else " (incomplete)")
        except Exception as e:  # a read-only or full disk: the map is still shown
            self.saved = f"not saved: {type(e).__name__}: {e}"
