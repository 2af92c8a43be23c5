"""One registry of options, name → builder. The UI, the CLI, the URL state and the sweep all read it.

Adding an activation, init or preset is one entry here; nothing else needs to change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special
from torch import nn

from . import data, models, text, transformer

Fn = Callable[[np.ndarray], np.ndarray]


class Names(Sequence):
    """The names of one registry map, read each time they are asked for: an entry added at runtime is at once a
    choice of the config, a CLI value, a URL value and an option of the controls (a tuple taken at import is not)."""

    def __init__(self, entries: Mapping):
        self._entries = entries

    def __getitem__(self, i):
        return list(self._entries)[i]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self._entries  # a list or dict would raise on hashing

    def __repr__(self) -> str:
        return f"Names({list(self._entries)})"


@dataclass(frozen=True)
class Activation:
    """One activation, everything any part of the lab needs of it: the net's module, the theory's φ and φ′ in numpy
    (float64, tested equal to the module through autograd), where a unit is stuck, and the init matched to it."""

    module: Callable[[], nn.Module]
    phi: Fn
    dphi: Fn
    # Where a unit passes (almost) no gradient: "dead" for the ReLU family, "saturated" for squashing ones.
    stuck: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    stuck_label: str
    init: str = "xavier_normal"  # the init that keeps χ near 1: the banner's cure for a too-large init
    remedy: str = "χ = 1 marks the edge between exploding and vanishing."  # the theory reading's last sentence


SELU_ALPHA = 1.6732632423543772848170429916717  # torch.nn.functional.selu constants
SELU_SCALE = 1.0507009873554804934193349852946
LEAKY_SLOPE = 0.01  # torch default negative_slope: almost no gradient
_SQRT2 = np.sqrt(2.0)


def _neg_expm1(x: np.ndarray) -> np.ndarray:
    return np.expm1(np.minimum(x, 0.0))  # clamp so the unused branch of np.where can't overflow


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + special.erf(x / _SQRT2))


def _dgelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + special.erf(x / _SQRT2)) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def _dsigmoid(x: np.ndarray) -> np.ndarray:
    s = special.expit(x)
    return s * (1.0 - s)


def _dead(h, a):
    return h <= 0


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(nn.ReLU, lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float), _dead, "dead",
                       "kaiming_normal", "He (kaiming) init for ReLU puts χ at exactly 1."),
    "leaky_relu": Activation(lambda: nn.LeakyReLU(LEAKY_SLOPE), lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
                             lambda x: np.where(x > 0, 1.0, LEAKY_SLOPE), _dead, "dead",
                             "kaiming_normal", "He (kaiming) init puts χ at ~1 for leaky ReLU."),
    "elu": Activation(nn.ELU, lambda x: np.where(x > 0, x, _neg_expm1(x)),
                      lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0))),
                      lambda h, a: h < -4.0, "saturated", "kaiming_normal"),  # elu'(-4) = 0.018
    "gelu": Activation(nn.GELU, _gelu, _dgelu, lambda h, a: h < -3.0, "dead", "kaiming_normal"),  # gelu'(-3) ≈ -0.012
    "selu": Activation(nn.SELU, lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * _neg_expm1(x)),
                       lambda x: SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0))),
                       lambda h, a: h < -4.0, "saturated", "kaiming_normal",
                       "SELU with σ_w² = 1 (LeCun normal) is built to keep χ ≈ 1."),
    "tanh": Activation(nn.Tanh, np.tanh, lambda x: 1.0 - np.tanh(x) ** 2,
                       lambda h, a: a.abs() > 0.99, "saturated",  # tanh' < 0.02
                       remedy="For tanh, χ ≈ 1 needs σ_w² ≈ 1 with small biases (Xavier-like for equal widths)."),
    "sigmoid": Activation(nn.Sigmoid, special.expit, _dsigmoid, lambda h, a: (a < 0.01) | (a > 0.99), "saturated",
                          remedy="Sigmoid's slope is at most 1/4 and its mean is 1/2, so χ reaches 1 only near "
                                 "σ_w² ≈ 100; deep sigmoid nets usually vanish."),
    "identity": Activation(nn.Identity, lambda x: np.asarray(x, dtype=float), lambda x: np.ones_like(x, dtype=float),
                           lambda h, a: torch.zeros_like(h, dtype=torch.bool), "dead"),
}


def _linear_default(w: torch.Tensor, b: torch.Tensor | None, cfg, g: torch.Generator) -> None:
    # nn.Linear.reset_parameters, re-done with our own generator so runs are reproducible per thread.
    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
    if b is not None:
        bound = 1 / math.sqrt(w.shape[1])
        nn.init.uniform_(b, -bound, bound, generator=g)


def _zero_bias(fill: Callable[[torch.Tensor, object, torch.Generator], None]):
    def init(w, b, cfg, g):
        fill(w, cfg, g)
        if b is not None:
            nn.init.zeros_(b)
    return init


def _spectral(w, cfg, g):
    """Recurrent matrix N(0, 1/n) per gate block, rescaled to the chosen spectral radius (Pascanu et al. 2013)."""
    n = w.shape[1]
    for block in w.split(n, dim=0):  # one block per gate of MODELS[...].gates
        nn.init.normal_(block, 0.0, 1.0 / math.sqrt(n), generator=g)
        radius = torch.linalg.eigvals(block.double()).abs().max().item()
        block.mul_(cfg.spectral_radius / radius)


@dataclass(frozen=True)
class Init:
    # fill(weight, bias, cfg, generator): fills the weight in place and zeroes the bias (except the PyTorch default,
    # which has its own bias rule)
    fill: Callable[[torch.Tensor, torch.Tensor | None, object, torch.Generator], None]
    # Var(W) of a layer from its fan-in, fan-out and the 'normal' init's std: the theory's σ_w² = fan_in · Var(W)
    weight_var: Callable[[int, int, float], float]
    bias_var: Callable[[int], float] = lambda fan_in: 0.0


def _xavier_var(fan_in, fan_out, std):
    return 2.0 / (fan_in + fan_out)


def _he_var(fan_in, fan_out, std):
    return 2.0 / fan_in


INITS: dict[str, Init] = {
    # kaiming_uniform(a=sqrt 5): U(±1/sqrt fan_in), variance 1/(3 fan_in), bias alike
    "pytorch_default": Init(_linear_default, lambda i, o, s: 1.0 / (3.0 * i), lambda i: 1.0 / (3.0 * i)),
    "xavier_normal": Init(_zero_bias(lambda w, cfg, g: nn.init.xavier_normal_(w, generator=g)), _xavier_var),
    "xavier_uniform": Init(_zero_bias(lambda w, cfg, g: nn.init.xavier_uniform_(w, generator=g)), _xavier_var),
    # He init for ReLU: Var(w) = 2 / fan_in.
    "kaiming_normal": Init(_zero_bias(lambda w, cfg, g: nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g)),
                           _he_var),
    "kaiming_uniform": Init(_zero_bias(lambda w, cfg, g: nn.init.kaiming_uniform_(w, nonlinearity="relu",
                                                                                  generator=g)), _he_var),
    # Orthonormal rows or columns, gain 1.
    "orthogonal": Init(_zero_bias(lambda w, cfg, g: nn.init.orthogonal_(w, generator=g)),
                       lambda i, o, s: 1.0 / max(i, o)),
    # Absolute std, whatever the fan-in: N(0, 1) is the classic too-large init.
    "normal": Init(_zero_bias(lambda w, cfg, g: nn.init.normal_(w, 0.0, cfg.init_std, generator=g)),
                   lambda i, o, s: s**2),
    # Recurrent models only: input weights Xavier, recurrent matrix at a chosen spectral radius.
    "spectral_radius": Init(_zero_bias(lambda w, cfg, g: nn.init.xavier_normal_(w, generator=g)), _xavier_var),
}
RECURRENT_ONLY_INITS = {"spectral_radius"}


@dataclass(frozen=True)
class ClipMode:
    label: str  # the control's short name
    words: Callable[[float, str], str]  # the setting in words, from its threshold and norm type
    threshold: tuple[float, float] | None = None  # the thresholds this mode allows, where narrower than the field's


CLIP_MODES: dict[str, ClipMode] = {
    "none": ClipMode("off", lambda t, n: "clipping off"),
    "norm": ClipMode("by norm", lambda t, n: f"clip ‖g‖{'∞' if n == 'inf' else ''} ≤ {t:g}"),
    "value": ClipMode("by value", lambda t, n: f"clip ±{t:g}"),
    # Per unit ‖G_i‖/max(‖W_i‖, 1e-3) ≤ λ (rows of a matrix, a whole 1-D vector), the output layer exempt.
    # λ from 1e-4 to 10; the paper's are 0.01 to 0.16.
    "agc": ClipMode("adaptive", lambda t, n: f"AGC λ = {t:g}", threshold=(1e-4, 10.0)),
}
CLIP_NORM_TYPES = {"2": "L2", "inf": "L∞"}  # name -> the control's label


def describe_clip(mode: str, threshold: float, norm_type: str = "2") -> str:
    """A clip setting in words, as every view and event says it: 'clipping off', 'clip ‖g‖ ≤ 1', 'clip ±0.5',
    'AGC λ = 0.01'."""
    return CLIP_MODES[mode].words(threshold, norm_type)


OPTIMIZERS: dict[str, Callable] = {
    "sgd": lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr),
    "momentum": lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum),
    "adam": lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, cfg.beta2), eps=cfg.eps),
    "adamw": lambda params, cfg: torch.optim.AdamW(_decay_groups(params, cfg.weight_decay), lr=cfg.lr,
                                                   betas=(0.9, cfg.beta2), eps=cfg.eps),
}


def decays(p: torch.Tensor) -> bool:
    """AdamW's decoupled weight decay applies to matrices only; biases and norm gains are not decayed (as nanoGPT)."""
    return p.dim() >= 2


def _decay_groups(params, weight_decay: float) -> list[dict]:
    params = list(params)
    return [{"params": [p for p in params if decays(p)], "weight_decay": weight_decay},
            {"params": [p for p in params if not decays(p)], "weight_decay": 0.0}]


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """A live weight-decay change: the decaying group's (``_decay_groups``) from the next step on; AdamW reads
    group["weight_decay"] at each step, so this equals an AdamW built with it, its moments kept."""
    for group in optimizer.param_groups:
        if group["params"] and all(decays(p) for p in group["params"]):
            group["weight_decay"] = weight_decay


@dataclass(frozen=True)
class Loss:
    """A training loss: its label, the tasks it applies to and (output, target) -> the mean loss over the batch."""

    label: str
    tasks: tuple[str, ...]
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None  # None: the task's own (see loss_function)


def _square(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every output; class labels become one-hot targets (the square loss that the
    edge-of-stability papers train classifiers with)."""
    if y.dtype == torch.long:
        y = nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)
    return nn.functional.mse_loss(out, y)


LOSSES: dict[str, Loss] = {
    "auto": Loss("auto (the task's own)", ("classification", "regression"), None),
    "cross_entropy": Loss("cross-entropy", ("classification",), nn.functional.cross_entropy),
    "mse": Loss("square loss (MSE)", ("classification", "regression"), _square),
}


def loss_function(name: str, task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss a run trains on: ``auto`` is cross-entropy for classification and MSE for regression."""
    if name == "auto":
        name = "cross_entropy" if task == "classification" else "mse"
    return LOSSES[name].fn

DATASETS: dict[str, Callable[[int], data.Dataset]] = {
    "digits": data.digits,
    "gaussian": data.gaussian,
    "adding": data.adding,
    "temporal_order": data.temporal_order,
    "pycode": text.pycode,  # characters of the pinned torch package's own Python modules (training/text.py)
}
SEQUENCE_DATASETS = {"adding", "temporal_order"}
TEXT_DATASETS = {"pycode"}  # character-level text: for the language model only

@dataclass(frozen=True)
class ModelFamily:
    """Every fact about a network family that the config, the engine, the theory and the controls need."""

    recurrent: bool
    gates: tuple[str, ...] = ()  # the gate blocks stacked in W_hh, in PyTorch's order (recurrent only)
    activations: tuple[str, ...] | None = None  # the activations it allows; None: every one
    hidden_activation: str | None = None  # the one its hidden state uses whatever the config says; None: the config's
    text: bool = False  # a language model: it takes the text datasets, and only it does


MODELS: dict[str, ModelFamily] = {
    "mlp": ModelFamily(recurrent=False),
    "rnn": ModelFamily(recurrent=True, gates=("W_hh",), activations=("tanh", "relu")),
    # The gates' sigmoids and the tanh of the candidate and the output: cfg.activation has no say.
    "lstm": ModelFamily(recurrent=True, gates=("input", "forget", "cell", "output"), hidden_activation="tanh"),
    "gru": ModelFamily(recurrent=True, gates=("reset", "update", "new"), hidden_activation="tanh"),
    # A causal character-level decoder (training/transformer.py); the activation is its feed-forward layers'.
    "transformer": ModelFamily(recurrent=False, activations=("gelu", "relu"), text=True),
}
RECURRENT_MODELS = tuple(name for name, m in MODELS.items() if m.recurrent)


def hidden_activation(cfg) -> str:
    """The activation ``cfg``'s hidden units apply: the configured one, unless the model family fixes its own."""
    return MODELS[cfg.model].hidden_activation or cfg.activation


DEVICES = ("auto", "cpu", "cuda", "mps")


def build_data(cfg) -> data.Dataset:
    """The dataset for ``cfg``: sequences of seq_len steps, or text windows of the transformer's context."""
    return DATASETS[cfg.dataset](cfg.context if MODELS[cfg.model].text else cfg.seq_len)


def build_model(cfg, ds: data.Dataset, g: torch.Generator) -> nn.Module:
    """The network for ``cfg``, initialised from generator ``g`` alone (no global RNG)."""
    if cfg.model == "transformer":
        return transformer.build(cfg, ds.output_dim, ACTIVATIONS[cfg.activation].module, INITS[cfg.init].fill, g)
    if cfg.model == "mlp":
        net = models.MLP(ds.input_dim, cfg.hidden_sizes, ds.output_dim, ACTIVATIONS[cfg.activation].module,
                         cfg.norm, cfg.residual)
        with torch.no_grad():
            for lin in net.linears():
                INITS[cfg.init].fill(lin.weight, lin.bias, cfg, g)
        return net
    net = models.RecurrentNet(cfg.model, ds.input_dim, cfg.hidden_size, ds.output_dim, hidden_activation(cfg))
    with torch.no_grad():
        rnn = net.rnn
        if cfg.init == "pytorch_default":
            bound = 1 / math.sqrt(cfg.hidden_size)  # nn.RNNBase.reset_parameters
            for p in rnn.parameters():
                nn.init.uniform_(p, -bound, bound, generator=g)
        else:
            INITS[cfg.init].fill(rnn.weight_ih_l0, rnn.bias_ih_l0, cfg, g)
            if cfg.init == "spectral_radius":
                _spectral(rnn.weight_hh_l0, cfg, g)
                nn.init.zeros_(rnn.bias_hh_l0)
            else:
                INITS[cfg.init].fill(rnn.weight_hh_l0, rnn.bias_hh_l0, cfg, g)
        head_init = "xavier_normal" if cfg.init == "spectral_radius" else cfg.init
        INITS[head_init].fill(net.head.weight, net.head.bias, cfg, g)
    return net


def param_count(cfg, input_dim: int, output_dim: int) -> int:
    """Parameters the config would build, computed without building it (for the resource cap)."""
    if cfg.model == "transformer":
        return transformer.param_count(cfg, output_dim)
    if cfg.model == "mlp":
        widths = (input_dim, *cfg.hidden_sizes, output_dim)
        n = sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))
        if cfg.norm != "none":
            n += 2 * sum(cfg.hidden_sizes)
        return n
    gates = len(MODELS[cfg.model].gates)
    h = cfg.hidden_size
    return gates * (input_dim * h + h * h + 2 * h) + h * output_dim + output_dim


# Dataset shapes, for checks that must not build the data (validation, caps).
DATASET_DIMS = {"digits": (784, 10), "gaussian": (784, 10), "adding": (2, 1), "temporal_order": (6, 4),
                "pycode": (text.VOCAB_SIZE, text.VOCAB_SIZE)}


# The lessons (training/presets.py), one more name -> record map of the registry.
from .presets import PRESETS, Preset  # noqa: E402, F401
