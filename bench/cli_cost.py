"""P6: the whole ``python -m training run`` process ÷ a bare PyTorch loop of the same model, in CPU time.

Both sides are fresh processes: the CLI as a user runs it (its default config, the seed's MLP on digits, batch
64, SGD lr 0.01, probes every 10 steps and the test set every 50, the progress bar on, one table and its events
written at the end), and ``python -m bench.cli_cost bare STEPS``: the textbook loop on the same layers and data
(``zero_grad(); loss.backward(); optimizer.step()``, the loss read each step, written to a CSV at the end), one
torch thread. Start-up (imports, the dataset, the model) is the same order of cost as a few hundred steps, so each
side runs twice, LONG and SHORT steps, and the per-step cost is the CPU-time difference over LONG - SHORT:
what a long run pays per step, start-up cancelled. A pair is (CLI long, CLI short, bare long, bare short),
interleaved; the row gives the median of the pairs' ratios. CPU time (user + system, from ``wait4``) leaves out
time the process waits for a core on a shared machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from . import Row, row

LONG, SHORT = 2000, 400  # steps; the difference is ~5 s of CPU on the reference machine
QUICK_LONG, QUICK_SHORT = 300, 100


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


def _cli(steps: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "training", "run", "--steps", str(steps), "--out", str(out)]


def _bare(steps: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "bench.cli_cost", "bare", str(steps), str(out)]


def per_step(make, long: int, short: int, folder: Path, root: Path) -> float:
    """CPU seconds per step of a process, start-up cancelled: (long run - short run) / (long - short)."""
    t_long = _cpu_seconds(make(long, folder / "long.csv"), root)
    t_short = _cpu_seconds(make(short, folder / "short.csv"), root)
    return (t_long - t_short) / (long - short)


def run(quick: bool = False) -> list[Row]:
    root = Path(__file__).resolve().parent.parent
    long, short = (QUICK_LONG, QUICK_SHORT) if quick else (LONG, SHORT)
    pairs = 1 if quick else 3
    ratios, cli_us, bare_us = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for _ in range(pairs):
            c = per_step(_cli, long, short, folder, root)
            b = per_step(_bare, long, short, folder, root)
            ratios.append(c / b)
            cli_us.append(c * 1e6)
            bare_us.append(b * 1e6)
    cli_us.sort()
    bare_us.sort()
    note = (f"{pairs} pairs of {long}-{short} steps; per step CLI {cli_us[len(cli_us) // 2]:.0f} µs, "
            f"bare {bare_us[len(bare_us) // 2]:.0f} µs (CPU)")
    return [row("P6", "python -m training run ÷ bare loop, whole process, CPU time", ratios, "x", "<= 1.05", note)]


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
    if sys.argv[1:2] == ["bare"]:
        bare(int(sys.argv[2]), sys.argv[3])
    else:
        for r in run(quick="--quick" in sys.argv):
            print(f"{r.id} {r.what}: {r.median:.3f} (min {r.lo:.3f}, max {r.hi:.3f}) {r.note}")
