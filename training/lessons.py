"""Lessons: each preset is a problem and its fix, differing in exactly one setting, with a one-sentence claim.

``measure`` trains a lesson's problem and its fix through the engine and says what each did, in the outcome
classifier's words and with the numbers behind them. tests/test_lessons.py checks every claim against it, and
``python -m training.lessons`` prints the table of measured numbers that docs/science.md lists.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from . import outcome
from . import registry as R
from . import sharpness as SH
from .config import Config, from_preset
from .engine import Trainer


def problem(name: str) -> Config:
    return from_preset(name)


def fix(name: str) -> Config:
    return from_preset(name, **R.PRESETS[name].fix)


def change(name: str) -> tuple[str, object, object]:
    """The one field the fix changes: (field, value in the problem, value in the fix)."""
    (field, new), = R.PRESETS[name].fix.items()
    return field, getattr(problem(name), field), new


def change_text(name: str) -> str:
    field, old, new = change(name)
    return f"{field}: {old} → {new}"


@dataclass(frozen=True)
class Measured:
    """What one run did, as plain numbers."""

    outcome: str  # learned / stuck / vanished / exploded (training.outcome)
    words: str  # the classifier's words: "exploded at step 4", "learned", ...
    explosion_step: int | None  # the first non-finite step
    steps: int  # steps taken (rows recorded)
    first_loss: float
    final_loss: float  # mean of the last finite steps (the classifier's window)
    test_accuracy: float  # at the end; NaN when it exploded (the weights are those of the last finite step)
    signal_ratio: float  # ‖∂L/∂h‖ at the first layer (first time step) ÷ at the last, at step 0
    climb: int | None  # exploded: steps from the last loss within 1.5x of step 0's to the explosion
    blown_up_at_init: bool  # a step-0 loss far above an all-zero output's (training.outcome's rule)
    min_update_ratio: float  # smallest per-parameter ‖Δw‖/‖w‖ of the last finite step
    losses: tuple[float, ...]
    # (step, sharpness) at each sharpness probe (the preconditioned one for Adam); empty when the probe is off
    sharpness: tuple[tuple[int, float], ...] = ()
    edge: float = math.nan  # the sharpness at which the step stops being stable: 2/lr for plain gradient descent


def run(cfg: Config) -> Measured:
    """Train ``cfg`` for its steps on the CPU (one probe, at step 0, for the backward signal) and measure it."""
    t = Trainer(cfg.replace(probe_every=cfg.steps, eval_every=cfg.steps), "cpu")
    traj, losses, ratio, last, sharp = outcome.Trajectory(), [], math.nan, None, []
    at = t.columns.index(SH.edge_column(cfg.optimizer)) if cfg.sharpness_every else None
    for _ in range(cfg.steps):
        rec = t.step()
        if at is not None and rec.step % cfg.sharpness_every == 0:
            sharp.append((rec.step, float(rec.flat[at])))
        if rec.probe is not None and rec.step == 0:
            ratio = outcome.signal_ratio(rec.probe)
        traj.add(rec.loss, rec.applied)
        losses.append(rec.loss)
        if not rec.applied:
            break
        last = rec
    zero, const = t.references
    verdict = outcome.classify(traj, zero, const, ratio, language_model=R.MODELS[cfg.model].text)
    exploded = traj.explosion_step is not None
    start = outcome.climb_start(range(len(losses)), losses, traj.explosion_step)
    climb = traj.explosion_step - start if exploded else None
    ratios = [r for r in (last.update_ratios if last is not None else []) if math.isfinite(r)]
    return Measured(verdict.label, verdict.words, traj.explosion_step, len(losses), losses[0], traj.final,
                    math.nan if exploded else t.evaluate()[1], ratio, climb,
                    losses[0] > outcome.RULE.init_blowup * zero, min(ratios, default=math.nan), tuple(losses),
                    tuple(sharp), SH.edge(cfg.optimizer, cfg.lr, cfg.momentum))


def lm_run(cfg: Config) -> dict[str, float]:
    """A transformer run's attention and output measures: the largest attention logit (over layers) at step 0, its
    peak and its last value; the lowest layer's mean attention entropy at step 0 and at the end; log Z at step 0 and
    at the end; the loss, mean of the last 20 steps; and the outcome classifier's label."""
    t = Trainer(cfg.replace(probe_every=cfg.steps, eval_every=cfg.steps), "cpu")
    rows = []
    for _ in range(cfg.steps):
        rec = t.step()
        rows.append(rec.row())
        if not rec.applied:
            break
    r = np.array(rows)
    logit = r[:, [i for i, c in enumerate(t.columns) if c.startswith("attn_logit_max/")]].max(axis=1)
    entropy = r[:, [i for i, c in enumerate(t.columns) if c.startswith("attn_entropy/")]].min(axis=1)
    log_z = r[:, t.columns.index("logit_log_z")]
    return {"first_logit": logit[0], "peak_logit": float(np.nanmax(logit)), "last_logit": logit[-1],
            "first_entropy": entropy[0], "last_entropy": entropy[-1], "first_log_z": log_z[0], "last_log_z": log_z[-1],
            "final_loss": float(r[-20:, 0].mean()), "steps": len(r), "outcome": t.outcome().label}


def measure(name: str) -> tuple[Measured, Measured]:
    """The lesson's problem and fix, each trained through the engine."""
    return run(problem(name)), run(fix(name))


def _row(m: Measured) -> str:
    acc = "—" if math.isnan(m.test_accuracy) else f"{m.test_accuracy:.1%}"
    # A climb means something only from a healthy start: a net blown up at init has nowhere to climb from.
    climb = f" after its loss climbed for {m.climb} steps" if m.climb and not m.blown_up_at_init else ""
    signal = f"; ‖∂L/∂h‖ first ÷ last at step 0: {m.signal_ratio:.2g}" if math.isfinite(m.signal_ratio) else ""
    finite = [v for _, v in m.sharpness if math.isfinite(v)]
    sharp = (f"; sharpness {finite[0]:.3g} at step 0, {finite[-1]:.3g} at the last probe, edge {m.edge:.3g}"
             if finite else "")
    return f"{m.words}{climb}; loss {m.first_loss:.3g} → {m.final_loss:.3g}; test accuracy {acc}{signal}{sharp}"


def table(names=None) -> str:
    """The lessons as a markdown table of what the engine measured (docs/science.md)."""
    lines = ["| Lesson | The one change | Problem | Fix |", "|---|---|---|---|"]
    for name in names or R.PRESETS:
        p, f = measure(name)
        lines.append(f"| {name} | {change_text(name)} | {_row(p)} | {_row(f)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)  # the numbers do not depend on it; a shared machine does
    print(table(sys.argv[1:] or None))
