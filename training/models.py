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
        if probe is None:
            out, _ = self.rnn(x)  # the fused kernel: fast, but its hidden states carry no gradient of their own
            return self.head(out[:, -1])
        hs = self.unrolled(x)
        probe.append((hs, torch.stack([h.detach() for h in hs], dim=1)))
        return self.head(hs[-1])

    def unrolled(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The same recurrence step by step, each h_t retaining its gradient: ∂L/∂h_t through time.

        Same weights and arithmetic as the fused layer (tested); only probe steps pay for the Python loop.
        """
        r = self.rnn
        w = (r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0)
        h = x.new_zeros(x.shape[0], r.hidden_size)
        c = h
        if self.kind == "gru":
            cell = torch.gru_cell
        elif self.kind == "rnn":
            cell = torch.rnn_tanh_cell if r.nonlinearity == "tanh" else torch.rnn_relu_cell
        hs = []
        for t in range(x.shape[1]):
            if self.kind == "lstm":
                h, c = torch.lstm_cell(x[:, t], (h, c), *w)
            else:
                h = cell(x[:, t], h, *w)
            h.retain_grad()
            hs.append(h)
        return hs

    def linears(self) -> list[nn.Linear]:
        return [self.head]

    def recurrent_matrix(self) -> torch.Tensor:
        return self.rnn.weight_hh_l0
