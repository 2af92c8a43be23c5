"""One registry of options, name → builder. The UI, the CLI, the URL state and the sweep all read it.

Adding an activation, init or preset is one entry here; nothing else needs to change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from . import data, models


@dataclass(frozen=True)
class Activation:
    module: Callable[[], nn.Module]
    # Where a unit passes (almost) no gradient: "dead" for the ReLU family, "saturated" for squashing ones.
    stuck: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    stuck_label: str


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(nn.ReLU, lambda h, a: h <= 0, "dead"),
    "leaky_relu": Activation(lambda: nn.LeakyReLU(0.01), lambda h, a: torch.zeros_like(h, dtype=torch.bool), "dead"),
    "elu": Activation(nn.ELU, lambda h, a: h < -4.0, "saturated"),  # elu'(-4) = 0.018
    "gelu": Activation(nn.GELU, lambda h, a: h < -3.0, "dead"),  # gelu'(-3) ≈ -0.012
    "selu": Activation(nn.SELU, lambda h, a: h < -4.0, "saturated"),
    "tanh": Activation(nn.Tanh, lambda h, a: a.abs() > 0.99, "saturated"),  # tanh' < 0.02
    "sigmoid": Activation(nn.Sigmoid, lambda h, a: (a < 0.01) | (a > 0.99), "saturated"),
    "identity": Activation(nn.Identity, lambda h, a: torch.zeros_like(h, dtype=torch.bool), "dead"),
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
    for block in w.split(n, dim=0):  # LSTM stacks 4 gate matrices, GRU 3
        nn.init.normal_(block, 0.0, 1.0 / math.sqrt(n), generator=g)
        radius = torch.linalg.eigvals(block.double()).abs().max().item()
        block.mul_(cfg.spectral_radius / radius)


# Each init fills a weight matrix (and zeroes its bias, except the PyTorch default, which has its own bias rule).
INITS: dict[str, Callable] = {
    "pytorch_default": _linear_default,
    "xavier_normal": _zero_bias(lambda w, cfg, g: nn.init.xavier_normal_(w, generator=g)),
    "xavier_uniform": _zero_bias(lambda w, cfg, g: nn.init.xavier_uniform_(w, generator=g)),
    # He init for ReLU: Var(w) = 2 / fan_in.
    "kaiming_normal": _zero_bias(lambda w, cfg, g: nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g)),
    "kaiming_uniform": _zero_bias(lambda w, cfg, g: nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=g)),
    "orthogonal": _zero_bias(lambda w, cfg, g: nn.init.orthogonal_(w, generator=g)),
    # Absolute std, whatever the fan-in: N(0, 1) is the classic too-large init.
    "normal": _zero_bias(lambda w, cfg, g: nn.init.normal_(w, 0.0, cfg.init_std, generator=g)),
    # Recurrent models only: input weights Xavier, recurrent matrix at a chosen spectral radius.
    "spectral_radius": _zero_bias(lambda w, cfg, g: nn.init.xavier_normal_(w, generator=g)),
}
RECURRENT_ONLY_INITS = {"spectral_radius"}

CLIP_MODES = ("none", "norm", "value")
CLIP_NORM_TYPES = ("2", "inf")

OPTIMIZERS: dict[str, Callable] = {
    "sgd": lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr),
    "momentum": lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum),
    "adam": lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr),
}

DATASETS: dict[str, Callable[[int], data.Dataset]] = {
    "digits": data.digits,
    "gaussian": data.gaussian,
    "adding": data.adding,
    "temporal_order": data.temporal_order,
}
SEQUENCE_DATASETS = {"adding", "temporal_order"}

RECURRENT_MODELS = ("rnn", "lstm", "gru")
MODELS = ("mlp", *RECURRENT_MODELS)
DEVICES = ("auto", "cpu", "cuda", "mps")


def build_model(cfg, ds: data.Dataset, g: torch.Generator) -> nn.Module:
    """The network for ``cfg``, initialised from generator ``g`` alone (no global RNG)."""
    if cfg.model == "mlp":
        net = models.MLP(ds.input_dim, cfg.hidden_sizes, ds.output_dim, ACTIVATIONS[cfg.activation].module,
                         cfg.norm, cfg.residual)
        with torch.no_grad():
            for lin in net.linears():
                INITS[cfg.init](lin.weight, lin.bias, cfg, g)
        return net
    nonlin = cfg.activation if cfg.model == "rnn" else "tanh"
    net = models.RecurrentNet(cfg.model, ds.input_dim, cfg.hidden_size, ds.output_dim, nonlin)
    with torch.no_grad():
        rnn = net.rnn
        if cfg.init == "pytorch_default":
            bound = 1 / math.sqrt(cfg.hidden_size)  # nn.RNNBase.reset_parameters
            for p in rnn.parameters():
                nn.init.uniform_(p, -bound, bound, generator=g)
        else:
            INITS[cfg.init](rnn.weight_ih_l0, rnn.bias_ih_l0, cfg, g)
            if cfg.init == "spectral_radius":
                _spectral(rnn.weight_hh_l0, cfg, g)
                nn.init.zeros_(rnn.bias_hh_l0)
            else:
                INITS[cfg.init](rnn.weight_hh_l0, rnn.bias_hh_l0, cfg, g)
        head_init = "xavier_normal" if cfg.init == "spectral_radius" else cfg.init
        INITS[head_init](net.head.weight, net.head.bias, cfg, g)
    return net


def param_count(cfg, input_dim: int, output_dim: int) -> int:
    """Parameters the config would build, computed without building it (for the resource cap)."""
    if cfg.model == "mlp":
        widths = (input_dim, *cfg.hidden_sizes, output_dim)
        n = sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))
        if cfg.norm != "none":
            n += 2 * sum(cfg.hidden_sizes)
        return n
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cfg.model]
    h = cfg.hidden_size
    return gates * (input_dim * h + h * h + 2 * h) + h * output_dim + output_dim


# Dataset shapes, for checks that must not build the data (validation, caps).
DATASET_DIMS = {"digits": (784, 10), "gaussian": (784, 10), "adding": (2, 1), "temporal_order": (6, 4)}


@dataclass(frozen=True)
class Preset:
    summary: str
    overrides: dict


SEED_NET = {"model": "mlp", "hidden_sizes": (512, 256, 128), "dataset": "digits"}

PRESETS: dict[str, Preset] = {
    "watch it explode": Preset(
        "The seed's 784-512-256-128-10 ReLU net with N(0,1) weights and no clipping: non-finite within 100 steps.",
        {**SEED_NET, "activation": "relu", "init": "normal", "init_std": 1.0, "clip": "none",
         "optimizer": "sgd", "lr": 0.01, "steps": 300},
    ),
    "clip it": Preset(
        "One change to the exploding setup, norm clipping at 1.0: steps are capped, training survives, loss falls.",
        {**SEED_NET, "activation": "relu", "init": "normal", "init_std": 1.0, "clip": "norm",
         "clip_threshold": 1.0, "optimizer": "sgd", "lr": 0.01, "steps": 300},
    ),
    "fix the init": Preset(
        "Same net and learning rate, He (kaiming) init: gradients stay O(1) and the loss falls, no clipping needed.",
        {**SEED_NET, "activation": "relu", "init": "kaiming_normal", "clip": "none",
         "optimizer": "sgd", "lr": 0.01, "steps": 300},
    ),
    "leaky fix": Preset(
        "LeakyReLU with Xavier init: no dead units, a steady gradient flow, the loss falls.",
        {**SEED_NET, "activation": "leaky_relu", "init": "xavier_normal", "clip": "none",
         "optimizer": "sgd", "lr": 0.01, "steps": 300},
    ),
    "deep tanh vanishes": Preset(
        "30 tanh layers with small N(0, 0.05) weights: the gradient dies toward the input, early layers never learn.",
        {"model": "mlp", "hidden_sizes": (128,) * 30, "dataset": "digits", "activation": "tanh",
         "init": "normal", "init_std": 0.05, "clip": "none", "optimizer": "sgd", "lr": 0.01, "steps": 300},
    ),
    "RNN on long sequences explodes": Preset(
        "Tanh RNN, adding problem (length 50), recurrent radius 3: dL/dh_t grows ~1e5x back in time; it blows up.",
        {"model": "rnn", "activation": "tanh", "dataset": "adding", "seq_len": 50, "hidden_size": 64,
         "init": "spectral_radius", "spectral_radius": 3.0, "clip": "none", "optimizer": "sgd", "lr": 0.05,
         "steps": 500},
    ),
    "LSTM with clipping survives": Preset(
        "An LSTM on the same adding problem with norm clipping at 1.0: it learns the task and nothing blows up.",
        {"model": "lstm", "dataset": "adding", "seq_len": 50, "hidden_size": 64, "init": "pytorch_default",
         "clip": "norm", "clip_threshold": 1.0, "optimizer": "adam", "lr": 0.01, "steps": 1000},
    ),
}
