"""The networks. Parameters register in forward order, so ``named_parameters()`` reads input → output.

``probe`` (a list, or None) makes a forward pass record each layer's pre-activation ``h`` (with its
gradient retained, for the backward signal ∂L/∂h) and post-activation ``a``; off, it costs nothing.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d_in: int, d_out: int, activation: nn.Module, norm: str, residual: bool):
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)
        self.norm = {"none": None, "batch": nn.BatchNorm1d(d_out), "layer": nn.LayerNorm(d_out)}[norm]
        self.act = activation
        self.residual = residual and d_in == d_out  # a skip needs matching widths

    def forward(self, x: torch.Tensor, probe: list | None = None) -> torch.Tensor:
        h = self.fc(x)
        if self.norm is not None:
            h = self.norm(h)
        a = self.act(h)
        if probe is not None:
            h.retain_grad()
            probe.append((h, a))
        return x + a if self.residual else a


class MLP(nn.Module):
    def __init__(self, input_dim: int, hidden_sizes: tuple[int, ...], output_dim: int,
                 activation: type[nn.Module] | callable, norm: str = "none", residual: bool = False):
        super().__init__()
        widths = (input_dim, *hidden_sizes)
        self.blocks = nn.ModuleList(
            Block(a, b, activation(), norm, residual) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.head = nn.Linear(widths[-1], output_dim)

    def forward(self, x: torch.Tensor, probe: list | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, probe)
        return self.head(x)

    def linears(self) -> list[nn.Linear]:
        return [b.fc for b in self.blocks] + [self.head]


class RecurrentNet(nn.Module):
    """One recurrent layer read out from its last hidden state (the adding and temporal-order tasks)."""

    def __init__(self, kind: str, input_dim: int, hidden_size: int, output_dim: int, nonlinearity: str = "tanh"):
        super().__init__()
        kwargs = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
        cell = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.kind = kind
        self.rnn = cell(input_dim, hidden_size, batch_first=True, **kwargs)
        self.head = nn.Linear(hidden_size, output_dim)

    def forward(self, x: torch.Tensor, probe: list | None = None) -> torch.Tensor:
        out, _ = self.rnn(x)  # (batch, seq_len, hidden): every hidden state h_t
        if probe is not None:
            out.retain_grad()  # ∂L/∂h_t over t: the backward signal through time
            probe.append((out, out))
        return self.head(out[:, -1])

    def linears(self) -> list[nn.Linear]:
        return [self.head]

    def recurrent_matrix(self) -> torch.Tensor:
        return self.rnn.weight_hh_l0
