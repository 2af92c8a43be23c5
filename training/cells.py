"""One cell of a stability map: a short run, trained synchronously and classified; and the map as plain data.

Each cell is classified by the one outcome classifier of the lab (``training/outcome.py``, which defines
exploded, learned, vanished and stuck and says why each threshold is where it is), from its per-step losses, its
first non-finite step and its backward-signal ratio at initialisation. A cell whose loss is huge at step 0 (the
forward pass blown up at init) and then falls is classified by what it did next, not marked exploded.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from . import loop
from . import outcome as O
from . import registry as R
from .config import Config
from .engine import Trainer

OUTCOMES = O.OUTCOMES  # code = index; -1 marks a cell not run yet
SEVERITY = ("exploded", "vanished", "stuck", "learned")  # a tied majority goes to the first of these
reference_losses = O.reference_losses


@dataclass(frozen=True)
class Rule(O.Rule):
    """The map's thresholds: those of the outcome classifier (training/outcome.py), saved with each sweep."""

    def classify(self, losses: Sequence[float], grad_norms: Sequence[float], signal_ratio: float,
                 zero_loss: float, const_loss: float, language_model: bool = False) -> tuple[str, str]:
        """(outcome, reason) from one run's per-step losses and pre-clip gradient norms (a non-finite norm marks
        a non-finite gradient: the engine's norms of finite gradients are always finite)."""
        finite = np.isfinite(np.asarray(losses, dtype=float)) & np.isfinite(np.asarray(grad_norms, dtype=float))
        o = O.classify_losses(losses, zero_loss, const_loss, signal_ratio, finite, self, language_model)
        return o.label, o.reason


@dataclass(frozen=True)
class Cell:
    x: float
    y: float
    seed: int


@dataclass
class CellResult:
    x: float
    y: float
    seed: int
    outcome: str
    reason: str
    initial_loss: float
    final_loss: float  # mean of the last steps (Rule.final_window); NaN when the run went non-finite
    max_grad_norm: float  # pre-clip, over the run
    first_grad_norm: float  # weight-gradient norm of the first layer (rnn: input weights), step 0
    last_grad_norm: float  # weight-gradient norm of the output layer, step 0
    signal_ratio: float  # ||dL/dh_first|| / ||dL/dh_last|| at step 0: what "vanished" reads
    steps_run: int
    seconds: float

    @property
    def code(self) -> int:
        return OUTCOMES.index(self.outcome)


COLUMNS = [f.name for f in fields(CellResult)]


def run_cell(cell: Cell, cfg: Config, rule: Rule) -> CellResult:
    """Train ``cfg`` synchronously and classify it. Stops at the first non-finite step (the engine rolls it back)."""
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    zero_loss, const_loss = trainer.references
    weights = [i for i, p in enumerate(trainer.params) if p.dim() >= 2]
    records = loop.steps(trainer, cfg.steps)
    first = next(records)
    losses, norms = [first.loss], [first.grad_norm_pre_clip]
    for rec in records:
        losses.append(rec.loss)
        norms.append(rec.grad_norm_pre_clip)
    ratio = O.signal_ratio(first.probe)
    outcome, reason = rule.classify(losses, norms, ratio, zero_loss, const_loss, R.MODELS[cfg.model].text)
    finite = bool(np.isfinite(losses).all() and np.isfinite(norms).all())
    return CellResult(
        x=cell.x, y=cell.y, seed=cell.seed, outcome=outcome, reason=reason, initial_loss=float(losses[0]),
        final_loss=float(np.mean(losses[-rule.final_window:])) if finite else float("nan"),
        max_grad_norm=float(np.max(norms)) if finite else float("inf"),
        first_grad_norm=float(first.grad_norms[weights[0]]), last_grad_norm=float(first.grad_norms[weights[-1]]),
        signal_ratio=ratio, steps_run=len(losses), seconds=time.perf_counter() - t0)


def majority(outcomes: Iterable[str]) -> str | None:
    """Most common outcome; a tie goes to the more severe one (exploded, vanished, stuck, learned)."""
    counts = Counter(outcomes)
    if not counts:
        return None
    top = max(counts.values())
    return next(o for o in SEVERITY if counts.get(o) == top)


def outcome_grid(results, xs: Sequence[float] | None = None, ys: Sequence[float] | None = None):
    """(xs, ys, codes, counts) for a heatmap: ``codes[j, i]`` is the majority outcome code (OUTCOMES index, -1 where
    no seed has finished) at x = xs[i], y = ys[j]; ``counts[j, i, k]`` counts seeds with outcome OUTCOMES[k].

    ``results`` is an iterable of CellResult or a DataFrame with x, y and outcome columns; ``xs``/``ys`` default to
    the values present (pass the sweep's axes to draw a partial map at its final size).
    """
    rows = results.to_dict("records") if hasattr(results, "to_dict") else [asdict(r) for r in results]
    xs = sorted({r["x"] for r in rows}) if xs is None else list(xs)  # ints stay ints (depth, batch size)
    ys = sorted({r["y"] for r in rows}) if ys is None else list(ys)
    xi, yi = {float(v): i for i, v in enumerate(xs)}, {float(v): j for j, v in enumerate(ys)}
    counts = np.zeros((len(ys), len(xs), len(OUTCOMES)), dtype=int)
    for r in rows:
        counts[yi[float(r["y"])], xi[float(r["x"])], OUTCOMES.index(r["outcome"])] += 1
    codes = np.full((len(ys), len(xs)), -1, dtype=int)
    for j, i in zip(*np.nonzero(counts.sum(axis=2)), strict=True):
        codes[j, i] = OUTCOMES.index(majority(Counter({o: counts[j, i, k] for k, o in enumerate(OUTCOMES)})
                                              .elements()))
    return xs, ys, codes, counts


def to_frame(results: Iterable[CellResult]):
    """One row per (x, y, seed), sorted, with ``majority``: the (x, y) cell's majority outcome over its seeds."""
    import pandas as pd  # here, not above: each spawned worker imports this module for run_cell (~0.3 s, 40 MB)

    df = pd.DataFrame([asdict(r) for r in results], columns=COLUMNS)
    df = df.sort_values(["y", "x", "seed"], kind="stable").reset_index(drop=True)
    df["majority"] = df.groupby(["x", "y"])["outcome"].transform(majority) if len(df) else pd.Series(dtype=str)
    return df
