"""The process-wide registry of runners, keyed by run id, so runs outlive a browser tab.

A refresh or a second browser reattaches to a live run through its id (the URL's ``?run=``). A cap on
concurrently running runners keeps the machine responsive; a Start beyond it is refused, naming the
runs that hold the slots.
"""

from __future__ import annotations

import os
import threading

from .config import Config
from .runner import RUNNING, Runner

DEFAULT_MAX_RUNNING = int(os.environ.get("GEL_MAX_RUNNING", os.cpu_count() or 1))


class CapacityError(RuntimeError):
    pass


class RunManager:
    def __init__(self, max_running: int = DEFAULT_MAX_RUNNING):
        self.max_running = max_running
        self._lock = threading.Lock()
        self._runners: dict[str, Runner] = {}  # keyed by the first run's id; insertion order = creation order

    def start(self, configs: Config | list[Config], labels: list[str] | None = None, paused: bool = False,
              device=None) -> Runner:
        """Build and start a runner, or raise CapacityError when every slot is taken."""
        with self._lock:
            busy = [rid for rid, r in self._runners.items() if r.alive and not r.paused]
            if not paused and len(busy) >= self.max_running:
                raise CapacityError(f"{len(busy)} of {self.max_running} training slots are in use "
                                    f"(runs {', '.join(busy)}); stop or pause one first")
            runner = Runner(configs, device=device, labels=labels)
            self._runners[runner.runs[0].id] = runner
        runner.start(paused=paused)
        return runner

    def get(self, run_id: str) -> Runner | None:
        with self._lock:
            return self._runners.get(run_id)

    def runners(self) -> list[Runner]:
        with self._lock:
            return list(self._runners.values())

    def running(self) -> list[Runner]:
        return [r for r in self.runners() if r.alive and any(run.status == RUNNING for run in r.runs)]

    def stop_all(self, timeout: float = 1.0) -> None:
        for r in self.runners():
            r.stop(timeout)


_manager: RunManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> RunManager:
    """The one manager of this process (the Streamlit server shares it across sessions)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = RunManager()
        return _manager
