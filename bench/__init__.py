"""Benchmarks: what monitoring and the dashboard cost a training run. ``python -m bench`` (``make bench``).

Machines are noisy and absolute times drift, so every figure compares two things measured side by side in the
same run, in alternating blocks (A, B, A, B, ...): a row reports the median of the per-pair ratios, with their
min and max. The reference is the seed's MLP 784-512-256-128-10 on ``digits``, batch 64, SGD lr 0.01, on the
CPU with one torch thread. Nothing here asserts a timing; ``tests/test_bench_smoke.py`` only checks that
``python -m bench --quick`` runs and prints the table.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    """One line of the table. ``median``/``lo``/``hi`` are None when the benchmark could not run (see ``note``)."""

    id: str
    what: str
    median: float | None
    lo: float | None
    hi: float | None
    unit: str  # "x" for a ratio, else "s", "ms", "MB", "yes/no"
    target: str  # e.g. "<= 1.05"
    meets: bool | None = None
    note: str = ""


def check(value: float | None, target: str) -> bool | None:
    """``target`` is "<= 1.05", ">= 0.9" or "yes"; None when there is nothing to compare ("-": no target)."""
    if value is None or target in ("", "-"):
        return None
    op, _, bound = target.partition(" ")
    if op == "yes":
        return bool(value)
    return value <= float(bound) if op == "<=" else value >= float(bound)


def row(id: str, what: str, values: list[float] | None, unit: str, target: str, note: str = "") -> Row:
    """A row from repeated measurements: median, min and max, and whether the median meets the target."""
    if not values:
        return Row(id, what, None, None, None, unit, target, None, note)
    med = statistics.median(values)
    return Row(id, what, med, min(values), max(values), unit, target, check(med, target), note)


def alternate(a: Callable[[], float], b: Callable[[], float], pairs: int, warmup: int = 1) -> list[tuple[float, float]]:
    """Run ``a`` and ``b`` in alternating blocks, ``warmup`` pairs discarded; each returns what it measured."""
    out = []
    for i in range(warmup + pairs):
        va, vb = a(), b()
        if i >= warmup:
            out.append((va, vb))
    return out


def machine() -> dict[str, str]:
    """Date, CPU model and cores, load, Python and torch versions: recorded with every result."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), model)
    except (OSError, subprocess.SubprocessError):
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": model,
            "cores": str(os.cpu_count()), "load (1/5/15 min)": load, "python": platform.python_version(),
            "torch": torch.__version__}


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "yes/no":
        return "yes" if v else "no"
    if unit == "x":
        return f"{v:.3f}"
    return f"{v:#.3g}" if abs(v) < 100 else f"{v:.0f}"


def table(rows: list[Row], markdown: bool = False) -> str:
    head = ["id", "what", "median", "min", "max", "unit", "target", "meets", "note"]
    body = [[r.id, r.what, _fmt(r.median, r.unit), _fmt(r.lo, r.unit), _fmt(r.hi, r.unit), r.unit, r.target,
             {True: "yes", False: "NO", None: "-"}[r.meets], r.note] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in b) + " |" for b in body])
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head) - 1)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    return "\n".join(fmt.format(*x) for x in [head, *body])


def timed(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    t0 = clock()
    fn()
    return clock() - t0
