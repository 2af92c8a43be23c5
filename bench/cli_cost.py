"""C1: the whole ``python -m training run`` process ÷ a bare PyTorch loop of the same model, in CPU time.

Both sides are fresh processes: the CLI as a user runs it (its default config, the seed's MLP on digits, batch
64, SGD lr 0.01, probes every 10 steps and the test set every 50, the progress bar on, one table and its events
written at the end), and ``python -m bench.cli_cost bare STEPS``: the textbook loop on the same layers and data
(``zero_grad(); loss.backward(); optimizer.step()``, the loss read each step, written to a CSV at the end), one
torch thread. Start-up (imports, the dataset, the model) is the same order of cost as a few hundred steps, so each
side runs twice, LONG and SHORT steps, and the per-step cost is the CPU-time difference over LONG - SHORT:
what a long run pays per step, start-up cancelled. A pair is (CLI long, CLI short, bare long, bare short),
interleaved; the row gives the median of the pairs' ratios. CPU time (user + system, from ``wait4``) leaves out
time the process waits for a core on a shared machine. A third process, ``python -m bench.cli_cost engine``,
steps the ``Trainer`` alone as the CLI does (same probes, nothing kept, nothing written): CLI ÷ engine is what the
CLI itself adds (progress bar, rows, the file), engine ÷ bare what the instrumented step adds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from . import Row, row

LONG, SHORT = 4000, 200  # steps: the difference is ~10 s of CPU, so start-up noise (~0.3 s) stays near 3%
QUICK_LONG, QUICK_SHORT = 300, 100
PAIRS = 5


def _cpu_seconds(argv: list[str], cwd: Path) -> float:
    """CPU time (user + system) of a child process, which must exit 0."""
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err: list[bytes] = []  # drained by a thread, so the progress bar never blocks on a full pipe
    reader = threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)
    reader.start()
    _, status, usage = os.wait4(p.pid, 0)  # the child's own rusage, not this process's other children
    reader.join()
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        tail = b"".join(err)[-300:].decode(errors="replace")
        raise RuntimeError(f"{' '.join(argv[1:4])} exited {p.returncode}: {tail}")
    return usage.ru_utime + usage.ru_stime


def _argv(kind: str, steps: int, out: Path) -> list[str]:
    if kind == "cli":
        return [sys.executable, "-m", "training", "run", "--steps", str(steps), "--out", str(out)]
    return [sys.executable, "-m", "bench.cli_cost", kind, str(steps), str(out)]


KINDS = ("cli", "engine", "bare")


def run(quick: bool = False) -> list[Row]:
    root = Path(__file__).resolve().parent.parent
    long, short = (QUICK_LONG, QUICK_SHORT) if quick else (LONG, SHORT)
    pairs = 1 if quick else PAIRS
    per_step: dict[str, list[float]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for _ in range(pairs):  # the three kinds side by side, long runs then short ones
            t_long = {k: _cpu_seconds(_argv(k, long, folder / f"{k}.csv"), root) for k in KINDS}
            t_short = {k: _cpu_seconds(_argv(k, short, folder / f"{k}.csv"), root) for k in KINDS}
            for k in KINDS:
                per_step[k].append((t_long[k] - t_short[k]) / (long - short))
    ratio = {k: [a / b for a, b in zip(per_step[k], per_step["bare"], strict=True)] for k in ("cli", "engine")}
    us = {k: sorted(v)[len(v) // 2] * 1e6 for k, v in per_step.items()}
    note = (f"{pairs} pairs of {long}-{short} steps; CPU per step: CLI {us['cli']:.0f} µs, engine loop "
            f"{us['engine']:.0f} µs, bare {us['bare']:.0f} µs")
    return [row("C1", "python -m training run ÷ bare loop, whole process, CPU time", ratio["cli"], "x", "<= 1.05",
                note),
            row("C1", "  of which the engine: a process stepping Trainer alone ÷ bare loop", ratio["engine"], "x",
                "-", "Trainer.step() with the CLI's probes; no progress bar, no rows kept, no file")]


def engine(steps: int, out: str) -> None:
    """The engine alone in a process: ``Trainer.step()`` as the CLI calls it, keeping nothing, writing one loss."""
    import torch

    from training.config import Config
    from training.engine import Trainer

    torch.set_num_threads(1)
    t = Trainer(Config(steps=steps))
    t.activation_probes = False  # as the CLI runs it
    for _ in range(steps):
        rec = t.step()
    Path(out).write_text(f"loss\n{rec.loss!r}\n")


def bare(steps: int, out: str) -> None:
    """The textbook loop: the seed's layers with PyTorch's default init, digits, batch 64, SGD lr 0.01."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from training.data import digits

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = digits()
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(data.x_train), (64,), generator=gen)
        x, y = data.x_train[idx], data.y_train[idx]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    Path(out).write_text("loss\n" + "\n".join(map(repr, losses)) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] in (["bare"], ["engine"]):
        {"bare": bare, "engine": engine}[sys.argv[1]](int(sys.argv[2]), sys.argv[3])
    else:
        for r in run(quick="--quick" in sys.argv):
            print(f"{r.id} {r.what}: {r.median:.3f} (min {r.lo:.3f}, max {r.hi:.3f}) {r.note}")
