"""P9: P1 for the transformer, and its steps per second on one thread.

P1's method (bench/step_overhead.py): the engine's instrumented step, appended to a ``History`` as the runner does,
÷ the textbook loop of the same model, data and optimizer, in alternating blocks of CPU time. The bare side's model
takes no attention measures (``TransformerLM.measure = False``): the ratio includes what the measures cost, the
largest attention logit and the entropy per layer and log Z, in the step's one transfer. Probes off, as for P1's
headline rows. The targets apply at the config's transformer defaults, as P1's do at the MLP's; the lessons'
larger transformer (context 64, Adam) is measured beside them and reported. Then the engine's steps per second on
one torch thread at each (per second of the thread's CPU time).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from training import presets
from training.config import Config
from training.engine import Trainer
from training.history import History

from . import Row, row
from .step_overhead import BLOCK_S, engine_vs_bare

# The lessons' transformer (2 layers × 64, 4 heads, context 64, batch 16, Adam) with probes off.
LESSON = Config(**{**presets.LM, "steps": 10_000_000, "probe_every": 100_000})
DEFAULTS = Config(model="transformer", dataset="pycode", steps=10_000_000, probe_every=100_000)  # batch 64, SGD
SHAPE = f"{DEFAULTS.n_layers} × {DEFAULTS.d_model}, context {DEFAULTS.context}, batch {DEFAULTS.batch_size}"


def _without_measures(model) -> None:
    model.measure = False


def steps_per_s(cfg: Config, seconds: float) -> float:
    """Engine steps (each appended to a History) per second of this thread's CPU time: one torch thread does all
    the work, so on a quiet machine it is the wall-clock rate, and on a shared one the others' load is left out."""
    t = Trainer(cfg, "cpu")
    hist = History(t.columns)
    for _ in range(3):
        t.step()
    n, t0 = 0, time.thread_time()
    while time.thread_time() - t0 < seconds:
        rec = t.step()
        hist.append(rec.step, rec.row())
        n += 1
    return n / (time.thread_time() - t0)


def run(quick: bool = False) -> list[Row]:
    torch.set_num_threads(1)
    pairs = 8 if quick else 60
    rows = []
    for what, cfg, target in ((f"engine ÷ bare, transformer defaults ({SHAPE}, sgd)", DEFAULTS, "<= 1.05"),
                              ("same, clip norm 1.0", DEFAULTS.replace(clip="norm"), "<= 1.05"),
                              ("engine ÷ bare, the lessons' transformer (2 × 64, context 64, batch 16, adam)", LESSON,
                               "-")):
        ratios, frac = engine_vs_bare(cfg, pairs, BLOCK_S * 4, _without_measures)  # ~20 ms steps: longer blocks
        q1, q3 = np.percentile(ratios, [25, 75])
        note = f"IQR {q1:.3f}-{q3:.3f}, {pairs} pairs" + (f"; clipped {frac:.0%} of steps" if cfg.clip == "norm"
                                                          else "")
        rows.append(row("P9", what, ratios, "x", target, note))
    for what, cfg, target in ((f"steps/s, transformer defaults ({SHAPE}, sgd), one thread", DEFAULTS, ">= 50"),
                              ("steps/s, the lessons' transformer (batch 16, adam), one thread", LESSON, "-")):
        rates = [steps_per_s(cfg, 0.5 if quick else 2.0) for _ in range(2 if quick else 5)]
        rows.append(row("P9", what, rates, "steps/s", target, "CPU time of the one thread, engine step and history"))
    return rows
