"""P1 and P5: the engine's instrumented step ÷ a bare PyTorch loop of the same model, data and clipping.

Both sides are built by the engine from one config (same init, same batch stream): the engine side calls
``Trainer.step()`` and appends the row to a ``History`` as the runner does; the bare side runs
``zero_grad(); loss.backward(); [clip_grad_norm_]; optimizer.step()`` on its own copy. Both follow the
same trajectory, so they time the same numbers. Probes (activation statistics and ‖∂L/∂h‖ every
``probe_every`` steps, test-set evaluation every ``eval_every``) are extra work beyond per-step metrics: off
for the headline rows, at their defaults (10 and 50 steps) in one more row.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from training.config import Config
from training.engine import Trainer
from training.history import History

from . import Row, alternate, row, timed

NO_PROBES = 100_000  # the largest probe_every: one probe at step 0 (in the warm-up), none measured
REFERENCE = Config(probe_every=NO_PROBES, steps=10_000_000)  # the seed's MLP on digits, batch 64, SGD lr 0.01
DEEP = REFERENCE.replace(hidden_sizes=(256,) * 32)
LSTM = REFERENCE.replace(model="lstm", dataset="adding", hidden_size=128, seq_len=100)
# Short blocks, many pairs: the two blocks of a pair then see the same machine, and the median of many pairs is
# steady to about 1% on a loaded 2-core machine where long blocks drift apart by 10%.
BLOCK_S = 0.03


def bare_loop(t: Trainer, clip: float | None, sgd_by_hand: bool = False):
    """``n`` steps of the textbook loop on ``t``'s model; ``sgd_by_hand``: the update the engine applies for plain
    SGD (gradients set to None, one ``_foreach_add_``) instead of ``zero_grad()`` and ``SGD.step()``."""
    model, opt, params, loss_fn = t.model, t.optimizer, t.params, t.loss_fn

    def steps(n: int) -> None:
        for _ in range(n):
            x, y = t.sample()
            if sgd_by_hand:
                for p in params:
                    p.grad = None
            else:
                opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            if sgd_by_hand:
                with torch.no_grad():
                    torch._foreach_add_(params, [p.grad for p in params], alpha=-opt.param_groups[0]["lr"])
            else:
                opt.step()

    return steps


def _ratios(a, b, pairs: int, block_s: float) -> list[float]:
    """Alternating blocks of ``a`` and ``b`` (each runs n steps), n set so a block of ``b`` takes ~block_s."""
    a(3)  # step 0 probes; both sides warm their allocators
    b(3)
    per_step = timed(lambda: b(3)) / 3
    n = max(1, round(block_s / per_step))
    clock = time.thread_time  # CPU time of this thread: one torch thread does all the work, preemption excluded
    times = alternate(lambda: timed(lambda: a(n), clock), lambda: timed(lambda: b(n), clock), pairs)
    return [ta / tb for ta, tb in times]


def update_by_hand_vs_optimizer(cfg: Config, pairs: int, block_s: float = BLOCK_S) -> list[float]:
    """What the engine's own SGD update saves, alone: the bare loop with it ÷ the bare loop with SGD.step()."""
    return _ratios(bare_loop(Trainer(cfg, "cpu"), None, sgd_by_hand=True), bare_loop(Trainer(cfg, "cpu"), None),
                   pairs, block_s)


def engine_vs_bare(cfg: Config, pairs: int, block_s: float = BLOCK_S, bare_model=None) -> tuple[list[float], float]:
    """Per-pair ratios engine time ÷ bare time, and the fraction of measured engine steps that clipped;
    ``bare_model(model)``: strips the bare side's model of what only the engine asks of it."""
    eng, bare = Trainer(cfg, "cpu"), Trainer(cfg, "cpu")
    if bare_model is not None:
        bare_model(bare.model)
    hist = History(eng.columns)
    # A history past its recent window, as in any run longer than ~2k steps: every append then also folds.
    for i in range(3 * 2048):
        hist.append(i - 3 * 2048, np.zeros(len(eng.columns)))
    clip = cfg.clip_threshold if cfg.clip == "norm" else None
    if cfg.clip == "value":
        raise ValueError("the bare loop covers clip none and norm")
    clipped = [0, 0]

    def engine_steps(n: int) -> None:
        for _ in range(n):
            rec = eng.step()
            hist.append(rec.step, rec.row())
            clipped[0] += rec.clipped
            clipped[1] += 1

    ratios = _ratios(engine_steps, bare_loop(bare, clip), pairs, block_s)
    return ratios, clipped[0] / max(clipped[1], 1)


def run(quick: bool = False) -> list[Row]:
    torch.set_num_threads(1)
    pairs = 8 if quick else 80
    block = BLOCK_S
    rows = []
    cases = [
        ("P1", "engine step ÷ bare loop, MLP, clip none", REFERENCE),
        ("P1", "engine step ÷ bare loop, MLP, clip norm 1.0", REFERENCE.replace(clip="norm")),
        ("P1", "same, clip norm 0.01 (clips every step)", REFERENCE.replace(clip="norm", clip_threshold=0.01)),
        ("P1", "same, clip none, probes every 10 steps, test set every 50", REFERENCE.replace(probe_every=10)),
        ("P5", "engine ÷ bare, 32 x 256 MLP, clip none", DEEP),
        ("P5", "engine ÷ bare, 32 x 256 MLP, clip norm 1.0", DEEP.replace(clip="norm")),
        ("P5", "engine ÷ bare, LSTM 128, seq 100, clip none", LSTM),
        ("P5", "engine ÷ bare, LSTM 128, seq 100, clip norm 1.0", LSTM.replace(clip="norm")),
    ]
    for id, what, cfg in cases:
        if quick and what.startswith("same"):
            continue
        # The LSTM's steps are long (~60 ms, one a block): fewer pairs keep the total time in bounds.
        n_pairs = max(4, pairs * 3 // 8) if cfg.model == "lstm" else pairs
        ratios, frac = engine_vs_bare(cfg, n_pairs, block)
        q1, q3 = np.percentile(ratios, [25, 75])
        note = f"IQR {q1:.3f}-{q3:.3f}, {n_pairs} pairs"
        if cfg.clip == "norm":
            note += f"; clipped {frac:.0%} of steps"
        # Probes are beyond P1's per-step metrics: their row shows what the default probing costs, with no target.
        rows.append(row(id, what, ratios, "x", "-" if "probes" in what else "<= 1.05", note))
        if what.endswith("MLP, clip none"):
            saved = update_by_hand_vs_optimizer(cfg, pairs, block)
            q1, q3 = np.percentile(saved, [25, 75])
            rows.append(row(id, "  of which the engine's own SGD update: bare loop with it ÷ with SGD.step()", saved,
                            "x", "-", f"IQR {q1:.3f}-{q3:.3f}, {pairs} pairs; grads set to None, one foreach add"))
    return rows
