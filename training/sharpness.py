"""Sharpness: the top eigenvalue λmax of the training loss's Hessian, by power iteration on Hessian-vector products.

Gradient descent with step size η on a quadratic diverges along every direction whose curvature exceeds 2/η: each
step overshoots along it and the overshoot grows by |1 - ηλ| > 1. On neural nets full-batch gradient descent
sharpens until λmax reaches 2/η and then hovers there, the "edge of stability" (Cohen et al. 2021). With heavy-ball
momentum β the edge is (2 + 2β)/η; with Adam it is the preconditioned sharpness, λmax of P⁻¹H with
P = diag(√v̂) + ε, that settles near (2 + 2β1)/((1 - β1)η), 38/η at β1 = 0.9 (Cohen et al. 2022).

The probe runs on a fixed batch (the whole training set when training is full-batch), on the weights of the row it
is recorded in, and never touches ``.grad`` or the optimizer: it reads the weights and, for Adam, the optimizer's
second moments. Each power iteration starts from the previous probe's eigenvector, so between nearby probes a few
products suffice (each costs about two backward passes).
"""

from __future__ import annotations

import math

import torch

ITERATIONS = 20  # at most this many Hessian-vector products per probe
TOLERANCE = 1e-3  # stop when the estimate moves by less than this fraction between two products
COLUMNS = ("sharpness", "sharpness_precond")
# A warm-started probe takes 2-6 products at ~2.6 steps each, 6-16 steps of the run: every 100 steps it adds 5-15%,
# every 200 under 10% (measured in docs/benchmarks.md, P8). Off by default; this is the schedule the controls suggest.
SUGGESTED_EVERY = 200


def edge(optimizer: str, lr: float, momentum: float = 0.0, beta1: float = 0.9) -> float:
    """The curvature at which the optimizer's step stops being stable on a quadratic: 2/η for gradient descent,
    (2 + 2β)/η with heavy-ball momentum, (2 + 2β1)/((1 - β1)η) for Adam's preconditioned sharpness."""
    if optimizer == "adam":
        return (2 + 2 * beta1) / ((1 - beta1) * lr)
    if optimizer == "momentum":
        return (2 + 2 * momentum) / lr
    return 2 / lr


def edge_factor(optimizer: str, momentum: float = 0.0, beta1: float = 0.9) -> float:
    """``edge`` × η: the numerator the chart divides by each step's learning rate (2, 2 + 2β or 38)."""
    return edge(optimizer, 1.0, momentum, beta1)


def columns(optimizer: str) -> list[str]:
    """The columns a probe adds to the row: the raw sharpness, and for Adam also the preconditioned one."""
    return list(COLUMNS) if optimizer == "adam" else [COLUMNS[0]]


def edge_column(optimizer: str) -> str:
    """The column compared with ``edge``: the preconditioned sharpness for Adam, the raw one otherwise."""
    return COLUMNS[1] if optimizer == "adam" else COLUMNS[0]


def last_words(steps, values, lrs, factor: float) -> str:
    """The last finite probe against its edge, for a summary line: 'sharpness 19.7 at step 1980 (2/lr = 20)'."""
    at = [i for i, v in enumerate(values) if math.isfinite(v)]
    if not at:
        return ""
    i = at[-1]
    return f"sharpness {values[i]:.3g} at step {int(steps[i])} ({factor:.3g}/lr = {factor / lrs[i]:.3g})"


class Probe:
    """λmax of the loss's Hessian at the current weights, on ``batch``, warm-started from the last probe."""

    def __init__(self, model: torch.nn.Module, params: list[torch.Tensor], loss_fn, batch, seed: int,
                 iterations: int = ITERATIONS, tolerance: float = TOLERANCE):
        self.model, self.params, self.loss_fn, self.batch = model, params, loss_fn, batch
        self.iterations, self.tolerance = iterations, tolerance
        g = torch.Generator().manual_seed(seed)
        # A random start: the power iteration needs a component along the top eigenvector, which it has almost surely.
        start = [torch.randn(p.shape, generator=g).to(p.device) for p in params]
        self._v = {"raw": start, "precond": [s.clone() for s in start]}
        self.products = 0  # Hessian-vector products taken so far (the cost, for the benchmark)

    def measure(self, optimizer: torch.optim.Optimizer | None = None) -> list[float]:
        """[sharpness] or, for Adam (``optimizer`` given), [sharpness, preconditioned sharpness]; NaN where the
        loss or a product is not finite, and the preconditioned one before Adam's first update."""
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}  # batch norm's running stats stay as they were
        try:
            with torch.enable_grad():
                x, y = self.batch
                loss = self.loss_fn(self.model(x), y)
                if not torch.isfinite(loss):
                    return [math.nan] * (1 if optimizer is None else 2)
                grads = torch.autograd.grad(loss, self.params, create_graph=True)
                out = [self._top(grads, "raw", None)]
                if optimizer is not None:
                    scale = _adam_scale(optimizer, self.params)
                    out.append(self._top(grads, "precond", scale) if scale is not None else math.nan)
                return out
        finally:
            with torch.no_grad():
                for n, b in self.model.named_buffers():
                    b.copy_(buffers[n])

    def _top(self, grads, key: str, scale: list[torch.Tensor] | None) -> float:
        """The largest eigenvalue of H (or of S H S, S = P^-1/2, which has P⁻¹H's eigenvalues)."""
        lam = self._power(grads, key, scale, shift=0.0)
        if lam < 0:  # the largest |λ| was negative: shift it below zero so the largest positive one leads
            lam = self._power(grads, key, scale, shift=-lam)
        return lam

    def _power(self, grads, key: str, scale, shift: float) -> float:
        v = _unit(self._v[key])
        lam, prev = math.nan, None
        for _ in range(self.iterations):
            hv = self._product(grads, v, scale)
            if shift:
                hv = [h + shift * u for h, u in zip(hv, v, strict=True)]
            lam = float(sum((h * u).sum() for h, u in zip(hv, v, strict=True))) - shift  # Rayleigh quotient
            if not math.isfinite(lam):
                return math.nan
            v = _unit(hv)
            if prev is not None and abs(lam - prev) <= self.tolerance * abs(lam):
                break
            prev = lam
        if all(torch.isfinite(t).all() for t in v):
            self._v[key] = [t.detach() for t in v]
        return lam

    def _product(self, grads, v: list[torch.Tensor], scale) -> list[torch.Tensor]:
        self.products += 1
        u = v if scale is None else [s * t for s, t in zip(scale, v, strict=True)]
        hv = torch.autograd.grad(grads, self.params, grad_outputs=u, retain_graph=True)
        return list(hv) if scale is None else [s * h for s, h in zip(scale, hv, strict=True)]


def _unit(v: list[torch.Tensor]) -> list[torch.Tensor]:
    norm = torch.sqrt(sum((t.double() ** 2).sum() for t in v))
    return [t / norm.to(t.dtype) for t in v]


def _adam_scale(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """P^-1/2 with P = √v̂ + ε, Adam's denominator exactly as torch.optim.Adam forms it; None before its first step."""
    group = opt.param_groups[0]
    _, beta2 = group["betas"]
    out = []
    for p in params:
        state = opt.state.get(p, {})
        if "exp_avg_sq" not in state:
            return None
        step = float(state["step"])
        denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2 ** step)).add_(group["eps"])
        out.append(denom.rsqrt())
    return out
