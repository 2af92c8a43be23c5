"""How a run ended, in one word: the one definition the lab's banner, Saved runs, the CLI and the map all use.

Steps are numbered from 0, as in the charts and the ``step`` column of every exported table: step k's loss and
gradients are computed on the weights after k updates. A step is **non-finite** when its loss or any element of
any gradient is inf or NaN; such a step is not applied.

**The explosion step** of a run is the number of its first non-finite step. A run that explodes at step k has
applied k updates (steps 0 … k−1) and recorded k + 1 rows (0 … k). A run that diverged without going
non-finite (below) has no explosion step.

Outcomes, first match wins (``Rule`` holds the thresholds):

1. **exploded**: a step went non-finite; or the run *diverged*: the mean loss of its last ``final_window`` steps
   is above ``diverge_factor`` × the lowest such mean it reached earlier (its best) *and* above the loss of the
   best constant output (label entropy; target variance for regression), i.e. it grew by a large factor from its
   best, stayed there, and is worse than a network that ignores its inputs.
2. **learned**: the mean loss of the last ``final_window`` steps is at most ``learn_fraction`` × min(step-0 loss,
   best-constant loss). Falling from 6e4 to 137 is not learning: the best-constant loss is the floor a network
   reaches without learning anything from its inputs. A **language model** (the transformer) is held to
   ``lm_learn_fraction`` × its best-constant loss, the unigram entropy of the characters, instead: text has an
   irreducible entropy of its own (~1 nat per character for code), so a character model that learned its
   bigrams and common words (~2.5 nats against a unigram entropy of 3.14 on pycode) never halves it in a short
   run, while one stuck at the character frequencies sits at 1.0× of it.
3. **vanished**: the backward signal reaching the first hidden layer, ‖∂L/∂h_1‖ (first time step for a
   recurrent net), is below ``vanish_ratio`` × the last hidden layer's, at initialisation (mean-field theory
   predicts this ratio: χ^((L−1)/2)). It ranks below learned: an LSTM starts with a ratio of 1e-11 over 50 steps
   and still learns, because training opens its forget gates; "vanished" names why a run failed.
4. **stuck**: none of these.

A step-0 loss above ``init_blowup`` × the loss of an all-zero output (ln C for C classes, E[y²] for regression)
is a network **blown up at init**: N(0, 1) weights at fan-in 784 start at a loss ~1e4. That alone is not an
explosion: if the loss then falls the run is classified by what it did next, and a run that learned anyway is
"learned (blown up at init, recovered)".

Everything here is plain Python and numpy; the per-step cost (``Trajectory.add``) is about a microsecond.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OUTCOMES = ("learned", "stuck", "vanished", "exploded")  # the map's codes are indices into this
BLOWN_UP_AT_INIT = "blown up at init, recovered"
EVENT = "outcome"  # the kind of the event the engine records at a run's last step


@dataclass(frozen=True)
class Rule:
    """The thresholds of the classification; the module docstring says why each is where it is."""

    diverge_factor: float = 10.0  # exploded: final window mean above this x its best window mean (and above const)
    init_blowup: float = 10.0  # blown up at init: step-0 loss above this x an all-zero output's loss
    learn_fraction: float = 0.5  # learned: final loss / min(step-0 loss, best-constant loss) at most this
    final_window: int = 5  # "final loss" = mean over this many last steps
    vanish_ratio: float = 1e-3  # vanished: ||dL/dh_first|| / ||dL/dh_last|| at init below this
    lm_learn_fraction: float = 0.9  # learned, a language model: final loss / unigram entropy at most this

    def text(self) -> str:
        w = self.final_window
        return (f"exploded: a non-finite loss or gradient, or the mean loss of the last {w} steps above "
                f"{self.diverge_factor:g}x its best and above the best-constant loss; "
                f"else learned: mean loss of the last {w} steps <= {self.learn_fraction:g}x "
                f"min(step-0 loss, best-constant loss) (a language model: <= {self.lm_learn_fraction:g}x the unigram "
                f"entropy of its characters); "
                f"else vanished: ||dL/dh|| at the first hidden layer (first time step) < {self.vanish_ratio:g}x "
                f"the last one's, at initialisation; else stuck. A step-0 loss above {self.init_blowup:g}x an "
                f"all-zero output's is 'blown up at init' and not, by itself, an explosion")


RULE = Rule()


@dataclass(frozen=True)
class Outcome:
    """One run's outcome. ``label`` is one of OUTCOMES; ``reason`` one line of true numbers."""

    label: str
    reason: str
    explosion_step: int | None = None  # the first non-finite step; None when none went non-finite
    note: str | None = None  # BLOWN_UP_AT_INIT for a run that learned after a blown-up start

    @property
    def words(self) -> str:
        """What every view shows: 'exploded at step 5', 'exploded (diverged)', 'learned', 'learned (blown up
        at init, recovered)', 'stuck', 'vanished'."""
        if self.label == "exploded":
            return f"exploded at step {self.explosion_step}" if self.explosion_step is not None \
                else "exploded (diverged)"
        return f"{self.label} ({self.note})" if self.note else self.label

    def event(self, step: int) -> dict:
        """The event the engine records at the run's last step (the store and the events file keep it)."""
        return {"step": step, "kind": EVENT, "outcome": self.label, "reason": self.reason,
                "explosion_step": self.explosion_step, "note": self.note, "message": f"{self.words}: {self.reason}"}

    @classmethod
    def from_event(cls, e: dict) -> Outcome:
        return cls(e["outcome"], e.get("reason", ""), e.get("explosion_step"), e.get("note"))


class Trajectory:
    """What the classification needs from a run's losses, kept as they arrive in O(1) memory: the step-0 loss,
    the best and the latest mean over ``window`` steps, and the first non-finite step."""

    def __init__(self, window: int = RULE.final_window):
        self.window = window
        self._recent: deque[float] = deque(maxlen=window)
        self.steps = 0
        self.first_loss = math.nan
        self.best = math.inf  # lowest mean of the last `window` losses seen at any step (fewer at the start)
        self.best_step = -1
        self.explosion_step: int | None = None

    def add(self, loss: float, finite: bool = True) -> None:
        """One step: its loss and whether the step was finite (loss and every gradient element)."""
        step = self.steps
        self.steps += 1
        if step == 0:
            self.first_loss = loss
        if not finite or not math.isfinite(loss):
            if self.explosion_step is None:
                self.explosion_step = step
            return
        if self.explosion_step is not None:
            return
        self._recent.append(loss)
        mean = self.final
        if mean < self.best:
            self.best, self.best_step = mean, step

    @property
    def final(self) -> float:
        """Mean loss of the last ``window`` finite steps (NaN before any)."""
        return sum(self._recent) / len(self._recent) if self._recent else math.nan

    @classmethod
    def of(cls, losses: Sequence[float], finite: Sequence[bool] | None = None,
           window: int = RULE.final_window) -> Trajectory:
        t = cls(window)
        for i, loss in enumerate(losses):
            t.add(float(loss), True if finite is None else bool(finite[i]))
        return t


def classify(traj: Trajectory, zero_loss: float, const_loss: float, signal_ratio: float = math.nan,
             rule: Rule = RULE, language_model: bool = False) -> Outcome:
    """The outcome of a run from its trajectory, the loss of an all-zero and of the best constant output
    (``reference_losses``) and its backward-signal ratio at init (``signal_ratio``; NaN: unknown);
    ``language_model``: held to ``rule.lm_learn_fraction`` of the unigram entropy (``const_loss``)."""
    if traj.steps == 0:
        return Outcome("stuck", "no steps")
    if traj.explosion_step is not None:
        return Outcome("exploded", f"step {traj.explosion_step} went non-finite (loss or gradient inf/NaN)",
                       traj.explosion_step)
    first, final, best = traj.first_loss, traj.final, traj.best
    if final > rule.diverge_factor * best and final > const_loss:
        return Outcome("exploded", f"diverged: its {traj.window}-step mean loss rose from {best:.3g} (step "
                                   f"{traj.best_step}) to {final:.3g} and stayed there, above the {const_loss:.3g} "
                                   f"of a constant guess")
    blown = first > rule.init_blowup * zero_loss
    init = f"; step-0 loss {first:.3g}, {first / zero_loss:.3g}x an all-zero output's" if blown else ""
    ref, fraction = (const_loss, rule.lm_learn_fraction) if language_model else (min(first, const_loss),
                                                                                 rule.learn_fraction)
    if final <= fraction * ref:
        return Outcome("learned", f"loss fell to {final:.3g}, {final / ref:.2g}x of {ref:.3g}{init}",
                       note=BLOWN_UP_AT_INIT if blown else None)
    if signal_ratio < rule.vanish_ratio:
        return Outcome("vanished", f"the first layer gets {signal_ratio:.2g}x the last layer's backward signal "
                                   f"at init; loss ended at {final:.3g}{init}")
    return Outcome("stuck", f"loss ended at {final:.3g}, {final / ref:.2g}x of {ref:.3g}{init}")


def classify_losses(losses: Sequence[float], zero_loss: float, const_loss: float, signal_ratio: float = math.nan,
                    finite: Sequence[bool] | None = None, rule: Rule = RULE, language_model: bool = False) -> Outcome:
    """``classify`` from a whole per-step loss list (``finite``: per step, loss and gradients finite; default:
    the loss is)."""
    return classify(Trajectory.of(losses, finite, rule.final_window), zero_loss, const_loss, signal_ratio, rule,
                    language_model)


def explosion_step(losses: Sequence[float], grad_norms: Sequence[float]) -> int | None:
    """The first step whose loss or gradient norm is not finite (the engine's L2 norms of finite gradients are
    always finite, so a non-finite norm means a non-finite gradient element); None when there is none."""
    bad = ~(np.isfinite(np.asarray(losses, dtype=float)) & np.isfinite(np.asarray(grad_norms, dtype=float)))
    return int(np.argmax(bad)) if bad.any() else None


CLIMB_FACTOR = 1.5  # a loss above 1.5x its first value on every step up to an explosion has been climbing


def climb_start(steps: Sequence[int], losses: Sequence[float], explosion_step: int | None) -> int | None:
    """The step where the loss starts its climb to an explosion: the last step before ``explosion_step`` whose loss
    was within ``CLIMB_FACTOR`` of the first step's; the first step when none was. None without an explosion."""
    if explosion_step is None or not len(steps):
        return None
    s, y = np.asarray(steps), np.asarray(losses, dtype=float)
    healthy = np.flatnonzero((s < explosion_step) & (y <= CLIMB_FACTOR * y[0]))
    return int(s[healthy[-1]]) if len(healthy) else int(s[0])


def signal_ratio(probe: dict | None) -> float:
    """‖∂L/∂h‖ at the first hidden layer (first time step) ÷ at the last, from a probe; NaN when unknown."""
    if not probe:
        return math.nan
    b = probe.get("time_backward_norm", probe.get("backward_norm"))  # recurrent: over time steps
    if b is None or len(b) == 0 or not np.isfinite(b[-1]) or b[-1] == 0:
        return math.nan
    return float(b[0] / b[-1])


def reference_losses(ds, n: int = 4096, mse: bool = False) -> tuple[float, float]:
    """(loss of an all-zero output, loss of the best constant output) on the dataset's targets; ``mse``: a
    classification trained on the square loss of one-hot targets (training.registry's ``mse``)."""
    import torch

    from .data import DATA_SEED

    y = ds.y_train if ds.y_train is not None else ds.sample(n, torch.Generator().manual_seed(DATA_SEED))[1]
    if ds.task == "classification":
        p = torch.bincount(y.flatten().cpu(), minlength=ds.output_dim).double() / y.numel()
        if mse:  # a zero output misses each one-hot target by 1 on one of K outputs; a constant p by p(1 - p) each
            return 1 / ds.output_dim, float((p * (1 - p)).sum()) / ds.output_dim
        nz = p[p > 0]
        return math.log(ds.output_dim), float(-(nz * nz.log()).sum())
    y = y.double().cpu()
    return float((y ** 2).mean()), float(y.var(dim=0, unbiased=False).mean())


def of_events(events: Sequence[dict]) -> Outcome | None:
    """The outcome recorded among a run's events (the last one), or None when the run has not ended."""
    e = next((e for e in reversed(events) if e.get("kind") == EVENT), None)
    return Outcome.from_event(e) if e else None
