"""Adaptive gradient clipping (Brock et al. 2021, "High-Performance Large-Scale Image Recognition Without
Normalization"): each unit's gradient is bounded relative to the unit's weights, ‖G_i‖ / max(‖W_i‖, ε) ≤ λ."""

from __future__ import annotations

import torch

AGC_EPS = 1e-3  # floor on a unit's weight norm: a unit at (or near) zero may still move (the paper's ε)
AGC_EXEMPT = "head."  # the output layer: left alone, as in the paper


def agc(names: list[str], params: list[torch.Tensor], grads: list[torch.Tensor],
        lam: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The clipped gradients, per unit G_i · λ·max(‖W_i‖, ε)/‖G_i‖ where the ratio exceeds λ (new tensors: ``grads``
    keep the values before clipping, which the engine may measure again); and the count of scaled units, as a 0-d
    tensor of the gradients' dtype (it travels in the step's one transfer).

    A unit is a row of a matrix in PyTorch's (out, in) layout (one output unit, or one gate unit of a recurrent
    W_ih/W_hh; the norm over every dim but the first), and a whole 1-D vector (a bias, a norm's gain), as in the
    paper's reference code. Cost: two row norms, a compare and a multiply per parameter tensor.
    """
    out, scaled = [], []
    for name, p, g in zip(names, params, grads, strict=True):
        if name.startswith(AGC_EXEMPT):
            out.append(g)
            continue
        dims = tuple(range(1, p.ndim)) if p.ndim > 1 else None
        gn = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
        limit = torch.linalg.vector_norm(p, dim=dims, keepdim=True).clamp_min(AGC_EPS) * lam
        over = gn > limit
        # Where over, gn > limit > 0; elsewhere the factor is exactly 1, so those gradients keep their bits.
        out.append(g * torch.where(over, limit / gn, 1.0))
        scaled.append(over.sum())
    count = torch.stack(scaled).sum().to(grads[0].dtype) if scaled else grads[0].new_zeros(())
    return out, count
