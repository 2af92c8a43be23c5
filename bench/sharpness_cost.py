"""P8: the sharpness probe's amortised cost: engine steps with ``sharpness_every = N`` ÷ the same steps with it off.

Side by side in alternating blocks, CPU time of this thread; each block is a whole number of probe periods, so it
holds as many probe steps as the run would. Two networks: the seed's MLP on minibatches of 64, and the
edge-of-stability lesson's 784-64-64-10 tanh net trained full-batch on the square loss. N = 20 is the lesson's
schedule; N = 200 is the one the controls suggest for watching a run (SUGGESTED_EVERY), and 100 is shown beside it.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from training import sharpness as SH
from training.config import Config
from training.engine import Trainer

from . import Row, alternate, row, timed

SEED_NET = Config(probe_every=100_000, steps=10_000_000)
EOS_NET = SEED_NET.replace(hidden_sizes=(64, 64), activation="tanh", init="xavier_normal", batch_size=0, loss="mse",
                           lr=0.1)


def probe_vs_off(cfg: Config, every: int, pairs: int) -> tuple[list[float], float]:
    """Per-pair ratios (probe on every ``every`` steps ÷ off), and the mean Hessian-vector products per probe."""
    on, off = Trainer(cfg.replace(sharpness_every=every), "cpu"), Trainer(cfg, "cpu")
    for t in (on, off):  # past step 0's probe and the first, cold power iteration
        for _ in range(every + 1):
            t.step()
    start, probes = on.sharpness.products, [0]

    def steps(t: Trainer):
        def go(n: int) -> None:
            for _ in range(n):
                t.step()
            if t is on:
                probes[0] += n // every
        return go

    periods = 1 if every >= 50 else max(1, 50 // every)  # ~50+ steps a block: a probe every N steps, amortised
    n = every * periods
    clock = time.thread_time
    times = alternate(lambda: timed(lambda: steps(on)(n), clock), lambda: timed(lambda: steps(off)(n), clock), pairs)
    return [a / b for a, b in times], (on.sharpness.products - start) / max(probes[0], 1)


def run(quick: bool = False) -> list[Row]:
    torch.set_num_threads(1)
    rows = []
    for name, cfg in (("seed MLP, batch 64", SEED_NET), ("784-64-64-10 tanh, full batch, MSE", EOS_NET)):
        for every in (20, 100, SH.SUGGESTED_EVERY):
            pairs = 4 if quick else (10 if every >= 100 else 20)
            ratios, products = probe_vs_off(cfg, every, pairs)
            q1, q3 = np.percentile(ratios, [25, 75])
            target = "<= 1.10" if every == SH.SUGGESTED_EVERY else "-"
            rows.append(row("P8", f"sharpness every {every} ÷ off, {name}", ratios, "x", target,
                            f"IQR {q1:.3f}-{q3:.3f}, {pairs} pairs; {products:.1f} Hessian-vector products a probe"))
    return rows
