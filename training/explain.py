"""Why a configuration explodes: the mean-field prediction for a Config, ready to set beside measurements.

The engine measures the backward signal ‖∂L/∂h_l‖ at each hidden layer's pre-activation (probe steps);
this module predicts the same profile from the activation, the init and the widths (``theory``), and where an
init's scale puts χ at 1 (the stability map's line).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from . import registry as R
from . import theory
from .config import FIELDS, Config


def not_applicable(cfg: Config) -> str | None:
    """Why the mean-field MLP prediction does not apply to ``cfg``, or None when it does."""
    if cfg.is_recurrent:
        return "the layer-by-layer prediction is for MLPs; for recurrent nets see the spectral radius below"
    if R.MODELS[cfg.model].text:
        return "the layer-by-layer prediction is for MLPs; a transformer's layer norms and attention are outside it"
    if cfg.norm != "none":
        return f"{cfg.norm} normalization rescales every layer, which the i.i.d. mean-field map does not model"
    if cfg.residual:
        return "residual connections add the identity path, which the plain mean-field map does not model"
    return None


def input_second_moment(dataset: str) -> float:
    """q_in = mean(x²) over the training inputs: the first layer's input variance in the theory."""
    ds = R.DATASETS[dataset](0)
    return float((ds.x_train.double() ** 2).mean())


def mlp_theory(cfg: Config) -> dict | None:
    """The prediction for ``cfg`` (see ``theory.mlp_prediction``), plus the hidden layers' backward profile
    normalised to the last hidden layer (the shape a measurement is compared with). None where it does not apply.
    """
    if not_applicable(cfg):
        return None
    n_in, n_out = R.DATASET_DIMS[cfg.dataset]
    widths = [n_in, *cfg.hidden_sizes, n_out]
    pred = theory.mlp_prediction(cfg.activation, cfg.init, widths, input_second_moment(cfg.dataset), cfg.init_std)
    hidden = np.asarray(pred["backward_norm"][:-1])
    pred["hidden_backward_profile"] = (hidden / hidden[-1]).tolist()
    return pred


@lru_cache(maxsize=64)
def critical_init_std(activation: str, fan_in: int) -> float | None:
    """The init_std of an N(0, init_std²) init with χ(q*) = 1 at this fan-in (the stability map's edge-of-chaos
    line), by bisection in log init_std over the field's range; None if no std there reaches χ = 1.

    Costs ~0.5 s (each step iterates the variance map to its fixed point), hence the cache.
    """
    def excess(log_std: float) -> float:
        w2, b2 = theory.init_sigma2("normal", fan_in, fan_in, math.exp(log_std))
        q = theory.fixed_point(activation, w2, b2)
        return math.inf if not math.isfinite(q) else theory.chi(activation, w2, b2, q) - 1.0

    lo, hi = math.log(FIELDS["init_std"].metadata["lo"]), math.log(FIELDS["init_std"].metadata["hi"])
    if excess(lo) >= 0 or excess(hi) <= 0:
        return None
    for _ in range(50):  # the bracket starts 18 e-folds wide: 50 halvings leave ~1e-14 relative
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
    return math.exp(0.5 * (lo + hi))


EDGE_BAND = 0.15  # within 15% of the edge: hovering at it (the edge-of-stability lesson's own tolerance)


def sharpness_reading(sharpness: float, edge: float, edge_name: str = "2/lr") -> str:
    """The latest sharpness against the edge of stability, in words."""
    if not math.isfinite(sharpness):
        return ("The sharpness is not finite at this probe: the loss or its curvature overflowed, so the steps "
                "before it are the ones to read.")
    if sharpness > (1 + EDGE_BAND) * edge:
        return (f"The top curvature of the loss passed {edge_name} ({sharpness:.3g} against {edge:.3g}): each "
                "step overshoots along that direction and the overshoot grows. A smaller learning rate raises the "
                "edge; clipping caps how far each overshoot goes.")
    if sharpness >= (1 - EDGE_BAND) * edge:
        return (f"At the edge of stability: the top curvature ({sharpness:.3g}) sits at {edge_name} = {edge:.3g}. "
                "Steps overshoot along that one direction and come back, so the loss still falls, though not on "
                "every step (Cohen et al. 2021).")
    return (f"The top curvature of the loss ({sharpness:.3g}) is below {edge_name} = {edge:.3g}: no direction is "
            "curved enough for a step to overshoot, so gradient descent is stable.")
