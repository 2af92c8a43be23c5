"""The dashboard and the CLI as users run them, plus the wall-clock time of every training step (P2, P3).

    python -m bench.traced serve TRACE -- <arguments of `streamlit run`>
    python -m bench.traced cli TRACE -- <arguments of `python -m training`>

``serve`` runs Streamlit in this process, so the app's training threads are this process's threads: every
``Run.record`` (the moment a step becomes visible to the page's snapshot) is timestamped. ``cli`` timestamps
every ``Trainer.step`` of the headless command. A daemon thread appends ``run steps time`` lines to TRACE
every 0.1 s; the cost is a clock read and a list append per step, the same in both. One torch thread in both,
as the app sets it.

To try a setting without editing the app, ``GEL_BENCH_PATCH="components.live_status.POLL_S=0.1"``
(``;``-separated) sets module attributes before the server starts (numbers only).
"""

from __future__ import annotations

import atexit
import sys
import threading
import time

FLUSH_S = 0.1


class Trace:
    """(run, steps so far, time.time()) per step, appended to a text file by a daemon thread."""

    def __init__(self, path: str):
        self.path = path
        self._rows: list[tuple[int, int, float]] = []
        self._lock = threading.Lock()
        open(path, "w").close()
        threading.Thread(target=self._flush_loop, name="bench-trace", daemon=True).start()
        atexit.register(self.flush)

    def add(self, run: int, steps: int) -> None:
        self._rows.append((run, steps, time.time()))  # list.append is atomic under the GIL

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            if rows:
                with open(self.path, "a") as f:
                    f.writelines(f"{r} {s} {t:.6f}\n" for r, s, t in rows)

    def _flush_loop(self) -> None:
        while True:
            time.sleep(FLUSH_S)
            self.flush()


def read_trace(path: str) -> list[tuple[int, int, float]]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    out.append((int(parts[0]), int(parts[1]), float(parts[2])))
    except FileNotFoundError:
        pass
    return out


def _patch(spec: str) -> None:
    import importlib

    for item in filter(None, (x.strip() for x in spec.split(";"))):
        target, _, value = item.partition("=")
        module, _, attr = target.rpartition(".")
        setattr(importlib.import_module(module), attr, float(value))


def serve(trace: Trace, args: list[str]) -> int:
    import os

    from training import runner

    _patch(os.environ.get("GEL_BENCH_PATCH", ""))
    record = runner.Run.record

    def traced_record(self, rec):
        record(self, rec)
        trace.add(id(self), self.history.total)

    runner.Run.record = traced_record
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", *args]
    return cli.main(prog_name="streamlit")


def cli(trace: Trace, args: list[str]) -> int:
    import torch

    from training import cli as training_cli
    from training import engine

    torch.set_num_threads(1)
    step = engine.Trainer.step

    def traced_step(self, batch=None):
        rec = step(self, batch)
        trace.add(id(self), self.step_idx)
        return rec

    engine.Trainer.step = traced_step
    return training_cli.main(args)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("serve", "cli") or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    trace = Trace(argv[1])
    return {"serve": serve, "cli": cli}[argv[0]](trace, argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
