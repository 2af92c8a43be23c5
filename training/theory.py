"""Mean-field signal propagation: why a configuration explodes (Poole et al. 2016; Schoenholz et al. 2017).

Each activation's φ and φ′ are its registry entry's (``registry.ACTIVATIONS``); the computation is numpy only.

A layer maps the pre-activation variance q forward (``variance_map``) and multiplies the squared
size of the backward signal delta_l = dL/dh_l by chi = sigma_w^2 * E[phi'(h)^2] (``chi``): chi > 1
explodes toward the input, chi < 1 vanishes, chi = 1 is the edge of chaos (ReLU + He init).

Weight-gradient norms are the wrong quantity to diagnose this: ||dL/dW_l|| ~ ||delta_l|| * ||x_{l-1}||,
and in a ReLU net a too-large init scale grows ||x|| forward exactly as fast as it grows ||delta||
backward, so the product stays nearly flat across layers whatever the scale. Look at ||delta_l||
(or chi) instead; that is what the predictions here are about.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy import optimize

from . import registry as R
from .registry import Fn

_DIVERGED = 1e30  # q beyond this counts as "explodes" in fixed_point


def _resolve(act: str | tuple[Fn, Fn]) -> tuple[Fn, Fn]:
    """(φ, φ′) of a registry activation, read at each call (an entry added at runtime is known), or a pair as given."""
    if isinstance(act, str):
        if act not in R.ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; expected one of {sorted(R.ACTIVATIONS)}")
        entry = R.ACTIVATIONS[act]
        return entry.phi, entry.dphi
    return act


@lru_cache(maxsize=8)
def _half_line_nodes(n: int, cutoff: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z in (0, cutoff) and weights w with sum(w f(z)) ~ integral_0^inf f(z) N(z; 0, 1) dz."""
    x, w = leggauss(n)
    z = 0.5 * cutoff * (x + 1.0)  # density beyond z = 12 is < 1e-31, below float precision of the sums
    w = 0.5 * cutoff * w * np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    z.flags.writeable = w.flags.writeable = False  # cached and shared between calls
    return z, w


def gauss_expect(f: Fn, q: float, n: int = 101) -> float:
    """E[f(sqrt(q) z)] for z ~ N(0, 1), accurate to ~1e-13 for functions smooth away from 0."""
    # Split at the kink: Gauss-Hermite (hermegauss) over relu' is off by 6% at n=101; Gauss-Legendre
    # on each half-line [0, 12] integrates the smooth pieces to machine precision (n nodes per half).
    z, w = _half_line_nodes(n)
    s = np.sqrt(max(float(q), 0.0))
    return float(np.dot(w, f(s * z)) + np.dot(w, f(-s * z)))


def variance_map(q: float, act: str | tuple[Fn, Fn], sigma_w2: float, sigma_b2: float) -> float:
    """Next layer's pre-activation variance: sigma_w2 * E[phi(sqrt(q) z)^2] + sigma_b2."""
    phi, _ = _resolve(act)
    return sigma_w2 * gauss_expect(lambda h: phi(h) ** 2, q) + sigma_b2


def chi(act: str | tuple[Fn, Fn], sigma_w2: float, sigma_b2: float, q: float) -> float:
    """Backward growth of ||delta||^2 per layer at pre-activation variance q (sigma_b2 enters only via q)."""
    _, dphi = _resolve(act)
    return sigma_w2 * gauss_expect(lambda h: dphi(h) ** 2, q)


def fixed_point(
    act: str | tuple[Fn, Fn],
    sigma_w2: float,
    sigma_b2: float,
    q0: float = 1.0,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> float:
    """q* of the variance map, iterated from q0; inf when q grows without bound.

    Diverges e.g. for relu with sigma_w2 > 2, or sigma_w2 = 2 with sigma_b2 > 0 (linear growth);
    relu with sigma_w2 = 2, sigma_b2 = 0 keeps every q fixed, so q0 is returned. A sequence still
    rising after max_iter counts as diverged; one still falling is returned (it is bounded below).
    """
    q, rising = float(q0), False
    for _ in range(max_iter):
        q_next = variance_map(q, act, sigma_w2, sigma_b2)
        if not np.isfinite(q_next) or q_next > _DIVERGED:
            return float("inf")
        if abs(q_next - q) <= tol * max(1.0, q):
            return q_next
        rising, q = q_next > q, q_next
    return float("inf") if rising else q


def _per_layer(values: float | Sequence[float], depth: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(values, dtype=float), (depth,)) if np.ndim(values) == 0 else None
    arr = np.asarray(values, dtype=float) if arr is None else arr
    if arr.shape != (depth,):
        raise ValueError(f"{name} needs {depth} entries, got {arr.shape}")
    return arr


def forward_variances(
    act: str | tuple[Fn, Fn],
    sigma_w2s: Sequence[float],
    sigma_b2s: float | Sequence[float],
    q_in: float,
) -> np.ndarray:
    """Pre-activation variance q_l of every linear layer, shape (L,); layer 1 sees the raw input q_in."""
    w2 = _per_layer(sigma_w2s, len(sigma_w2s), "sigma_w2s")
    b2 = _per_layer(sigma_b2s, len(w2), "sigma_b2s")
    q = np.empty(len(w2))
    q[0] = w2[0] * q_in + b2[0]  # no activation before the first layer
    for i in range(1, len(w2)):
        q[i] = variance_map(q[i - 1], act, w2[i], b2[i])
    return q


def _backward_chis(act: str | tuple[Fn, Fn], w2: np.ndarray, q: np.ndarray) -> np.ndarray:
    # step l -> l-1 multiplies ||delta||^2 by sigma_{w,l}^2 E[phi'(h_{l-1})^2]; shape (L-1,)
    return np.array([chi(act, w2[i + 1], 0.0, q[i]) for i in range(len(w2) - 1)])


def predicted_backward_norms(
    act: str | tuple[Fn, Fn],
    sigma_w2s: Sequence[float],
    sigma_b2s: float | Sequence[float],
    q_in: float,
    widths: Sequence[int] | None = None,
    out_grad_norm: float = 1.0,
) -> np.ndarray:
    """Predicted ||delta_l|| for layers 1..L (output last, = out_grad_norm), shape (L,).

    delta_{l-1} = phi'(h_{l-1}) * W_l^T delta_l gives
    E||delta_{l-1}||^2 = n_{l-1} Var(W_l) E[phi'^2] ||delta_l||^2
                       = sigma_{w,l}^2 E[phi'(h_{l-1})^2] ||delta_l||^2
    since Var(W_l) = sigma_{w,l}^2 / n_{l-1}: widths enter only through the per-layer sigma_w2s
    (see init_sigma2), so ``widths`` is just checked for shape.
    """
    w2 = _per_layer(sigma_w2s, len(sigma_w2s), "sigma_w2s")
    if widths is not None and len(widths) != len(w2) + 1:
        raise ValueError(f"widths needs {len(w2) + 1} entries (input, hidden..., output), got {len(widths)}")
    q = forward_variances(act, w2, sigma_b2s, q_in)
    chis = _backward_chis(act, w2, q)
    growth = np.append(np.cumprod(chis[::-1])[::-1], 1.0)  # product of chi from layer l up to the output
    return out_grad_norm * np.sqrt(growth)


def init_sigma2(init: str, fan_in: int, fan_out: int, init_std: float = 1.0) -> tuple[float, float]:
    """(sigma_w^2, sigma_b^2) with Var(W) = sigma_w^2 / fan_in, from the registry entry of ``init``."""
    if init not in R.INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {sorted(R.INITS)}")
    entry = R.INITS[init]
    return fan_in * entry.weight_var(fan_in, fan_out, init_std), entry.bias_var(fan_in)


def _verdict(growth: float) -> str:
    if growth > 10:
        return "this network explodes"
    if growth > 2:
        return "gradients grow noticeably toward the input"
    if growth >= 0.5:
        return "the network sits near the edge of chaos, so gradients keep their size"
    if growth >= 0.1:
        return "gradients shrink noticeably toward the input: they start to vanish"
    return "gradients vanish"


CHI_IN_WORDS = (
    "**What χ measures.** Going backward, each layer multiplies the gradient signal by its weights and by the "
    "activation's slope φ′ (how strongly the activation's output moves when its input moves). χ is the factor "
    "by which one layer multiplies the signal's *squared* size: the weights' scale σ_w² (the variance of one "
    "weight times the number of inputs it sees, its fan-in) times the average squared slope E[φ′(h)²] over the "
    "layer's pre-activations h. In symbols, χ = σ_w² · E[φ′(h)²]. Above 1 the signal grows layer after layer "
    "toward the input; below 1 it shrinks; at 1 it keeps its size."
)


def _reading(activation: str, chis: np.ndarray, growth: float, q_last: float) -> str:
    """Words first, then the formula, then this network's numbers. ``growth``: ‖∂L/∂h‖ at the first hidden layer
    ÷ at the last, the ratio the chart draws (it normalises to the last hidden layer)."""
    if len(chis) == 0:
        return "No hidden layers: the gradient passes through a single linear map, nothing compounds."
    between = chis[:-1] if len(chis) > 1 else chis  # the factors between the first and the last hidden layer
    mean_chi = float(np.exp(np.mean(np.log(between)))) if np.all(between > 0) else 0.0
    if len(chis) == 1:
        here = (f"With one hidden layer nothing compounds between hidden layers (χ ≈ {mean_chi:.3g} at that "
                f"layer).")
    else:
        if growth >= 1:
            size = f"~{growth:.3g}× larger"
        else:
            size = f"~{1 / growth:.3g}× smaller" if growth > 0 else "zero, not just smaller,"
        steps = len(chis) - 1
        here = (f"**This network, at initialisation:** χ ≈ {mean_chi:.3g} per layer (the signal's size changes by "
                f"√χ ≈ {np.sqrt(mean_chi):.3g} per layer), so over the {steps} "
                f"layer{'s' if steps > 1 else ''} from the last hidden layer back to the first, the backward signal "
                f"‖∂L/∂h‖ at the first hidden layer is predicted {size} than at the last (the chart's scale: "
                f"relative to the last hidden layer). At initialisation, {_verdict(growth)}.")
    if q_last > 1e6:
        here += f" The forward signal blows up too (pre-activation variance reaches {q_last:.3g})."
    remedy = R.ACTIVATIONS[activation].remedy
    return f"{CHI_IN_WORDS}\n\n{here} {remedy}"


def mlp_prediction(
    activation: str, init: str, widths: Sequence[int], q_in: float, init_std: float = 1.0
) -> dict:
    """Theory for an MLP with widths [n_in, h1, ..., n_out] (activation on hidden layers only).

    Returns plain lists: ``q`` (L pre-activation variances), ``chi`` (L-1: growth of ||delta||^2 through
    hidden layer l and its outgoing weights), ``backward_norm`` (L, relative, output = 1), plus
    ``chi_fixed_point`` (chi at q* for the middle layer's sigmas, None if q* diverges) and ``reading``.
    """
    pairs = [init_sigma2(init, widths[i], widths[i + 1], init_std) for i in range(len(widths) - 1)]
    w2 = np.array([p[0] for p in pairs])
    b2 = np.array([p[1] for p in pairs])
    q = forward_variances(activation, w2, b2, q_in)
    chis = _backward_chis(activation, w2, q)
    norms = predicted_backward_norms(activation, w2, b2, q_in, widths)
    mid = len(w2) // 2  # a hidden-to-hidden layer when there is one
    q_star = fixed_point(activation, w2[mid], b2[mid])
    chi_star = None if not np.isfinite(q_star) else chi(activation, w2[mid], b2[mid], q_star)
    return {
        "q": q.tolist(),
        "chi": chis.tolist(),
        "backward_norm": norms.tolist(),
        "chi_fixed_point": chi_star,
        "reading": _reading(activation, chis, float(norms[0] / norms[-2]) if len(norms) > 1 else 1.0, float(q[-1])),
    }


def spectral_stats(W: np.ndarray) -> tuple[float, float]:
    """(spectral radius, largest singular value) of a square matrix; radius <= singular value always."""
    W = np.asarray(W, dtype=float)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"need a square matrix, got shape {W.shape}")
    return float(np.max(np.abs(np.linalg.eigvals(W)))), float(np.linalg.norm(W, 2))


def _max_abs_slope(dphi: Fn) -> float:
    x = np.linspace(-10.0, 10.0, 20001)  # includes 0, where tanh, sigmoid and selu peak
    d = np.abs(dphi(x))
    i = int(np.argmax(d))
    res = optimize.minimize_scalar(  # polish the grid's best point (gelu' peaks at sqrt 2, off the grid)
        lambda t: -abs(float(dphi(np.array(t)))),
        bounds=(x[i] - 1e-3, x[i] + 1e-3),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return max(float(d[i]), -float(res.fun))


def pascanu_condition(activation: str) -> tuple[float, str]:
    """(gamma = sup |phi'|, explanation) for h_t = W phi(h_{t-1}) + ...; Pascanu, Mikolov, Bengio 2013."""
    _, dphi = _resolve(activation)
    gamma = _max_abs_slope(dphi)
    text = (
        f"For {activation}, |phi'| <= gamma = {gamma:.4g}, so each step scales the backward signal by at "
        f"most gamma * sigma_max(W_rec). Exploding gradients are only possible if the recurrent "
        f"matrix's largest singular value exceeds 1/gamma = {1 / gamma:.4g}; below that, gradients "
        f"vanish over long sequences (sufficient condition)."
    )
    return gamma, text
