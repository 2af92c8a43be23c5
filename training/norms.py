"""Per-tensor norms that overflowed float32, measured again in float64 (the engine's finite check)."""

from __future__ import annotations

import math

import torch


def to_host(scalars: list[torch.Tensor]) -> list[float]:
    """0-d tensors → Python floats (float32 values exactly): one stack and one copy to the host."""
    return torch.stack(scalars).tolist()


def exact_norms(host: list[float], k: int, n: int, grads: list[torch.Tensor], weights: list[torch.Tensor],
                 coef: float | None) -> bool:
    """Replace the per-tensor norms (gradients at ``host[k:k+n]``, weights after them) that overflowed float32 by
    their float64 value, in place; True when every gradient element is finite.

    A float32 norm sums squares in float32, so it is inf for a finite tensor whose norm is above ~1.8e19 (the
    step before a typical explosion); a NaN or inf element makes it NaN or inf too. Only a tensor whose float32
    norm is inf is measured again, in float64, where no float32 tensor can overflow: the common step keeps its
    one transfer, and a non-finite float64 norm means a non-finite element. ``coef``: the gradients were
    multiplied by it since their norms were taken (momentum or Adam with a norm clip); one zeroed that way
    (coefficient 0, as clip_grad_norm_ does when its float32 total overflows) cannot be measured again: its norm
    stays inf, and the step is finite if its elements were.
    """
    if sum(host[k:k + 2 * n]) < math.inf:  # the usual step: all finite (norms are >= 0, an inf or NaN shows)
        return True
    if any(math.isnan(host[k + i]) for i in range(n)):
        return False
    over = [i for i in range(2 * n) if host[k + i] == math.inf]
    if not over:
        return True
    exact = to_host([torch.linalg.vector_norm(grads[i] if i < n else weights[i - n], dtype=torch.float64)
                      for i in over])
    finite = all(math.isfinite(v) for i, v in zip(over, exact, strict=True) if i < n)
    for i, v in zip(over, exact, strict=True):
        if i < n and coef is not None:
            v = v / coef if coef > 0 and math.isfinite(v) else math.inf
        host[k + i] = v
    return finite
