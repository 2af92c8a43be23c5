"""Why a configuration explodes: the mean-field prediction for a Config, ready to set beside measurements.

The engine measures the backward signal ‖∂L/∂h_l‖ at each hidden layer's pre-activation (probe steps);
this module predicts the same profile from the activation, the init and the widths (``theory``).
"""

from __future__ import annotations

import numpy as np

from . import registry as R
from . import theory
from .config import Config


def not_applicable(cfg: Config) -> str | None:
    """Why the mean-field MLP prediction does not apply to ``cfg``, or None when it does."""
    if cfg.is_recurrent:
        return "the layer-by-layer prediction is for MLPs; for recurrent nets see the spectral radius below"
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


def measured_profile(probe: dict) -> np.ndarray:
    """A probe's ‖∂L/∂h_l‖ per hidden layer, normalised to the last hidden layer."""
    b = np.asarray(probe["backward_norm"], dtype=float)
    return b / b[-1] if len(b) and b[-1] > 0 else b


def suggestion(cfg: Config) -> str:
    """One line: the most likely cure for an explosion under ``cfg``."""
    if cfg.is_recurrent:
        if cfg.clip == "none":
            return "Turn on clipping by norm (Pascanu et al. 2013), or use an LSTM/GRU."
        return "Lower the clipping threshold or the learning rate, or shrink the recurrent spectral radius below 1."
    if cfg.init == "normal" and cfg.init_std > 0.1:
        return "Use He init (kaiming_normal) for ReLU-like activations, or xavier for tanh: N(0,1) is far too large."
    if cfg.clip == "none":
        return "Turn on clipping by norm (threshold 1–5), or lower the learning rate."
    return f"Lower the learning rate (now {cfg.lr:g}); clipping caps a step's size but not a bad init or lr."
