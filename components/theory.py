"""Why it explodes: the mean-field prediction beside the measured signal, and the recurrent matrix's spectrum.

Figure builders only (plain data in, Plotly figure out); the dashboard's theory panel composes them.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import theme as T
from .data import weight_params

PREDICTED = "#6B7280"
MEASURED_START = "#9467BD"
MEASURED_NOW = "#D62728"
WEIGHT_GRAD = "#1F77B4"


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def tick_text(v: float) -> str:
    """1e-05 → '10⁻⁵', 1000 → '1000', 0.01 → '0.01', 2e7 → '2×10⁷': exponents written out past three digits."""
    m, e = f"{v:.0e}".split("e")
    e = int(e)
    if -2 <= e <= 3:
        return f"{v:.4g}"
    return f"10{str(e).translate(SUPERSCRIPT)}" if m == "1" else f"{m}×10{str(e).translate(SUPERSCRIPT)}"


def log_axis(values, title: str | None = None) -> dict:
    """Plotly axis properties for a log axis over the finite positive ``values``, labelled so a student reads
    magnitudes: a tick at every power of ten the data span (at most ~8, every other decade beyond), or 1-2-5
    steps when they span less than a decade, each written out by ``tick_text``; the title stands off the ticks."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    axis: dict = {"type": "log", "automargin": True}
    if title is not None:
        axis["title"] = {"text": title, "standoff": 12}
    if not v.size:
        return axis
    lo, hi = np.floor(np.log10(v.min())), np.ceil(np.log10(v.max()))
    if hi - lo < 1:
        hi = lo + 1
    if hi - lo <= 1:  # under a decade: 1-2-5 steps, else a single decade tick would be the only label
        ticks = [m * 10.0 ** e for e in (lo - 1, lo, hi) for m in (1, 2, 5)]
        ticks = [t for t in ticks if v.min() / 2.5 <= t <= v.max() * 2.5]
    else:
        step = max(1, int(np.ceil((hi - lo) / 8)))
        ticks = [10.0 ** e for e in np.arange(lo, hi + 1, step)]
    axis.update(tickmode="array", tickvals=ticks, ticktext=[tick_text(t) for t in ticks])
    return axis


def _relative(values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v / v[-1] if len(v) and np.isfinite(v[-1]) and v[-1] > 0 else v


def backward_signal_figure(predicted: list[float] | None, probe_start: dict | None, probe_now: dict | None,
                           weight_grad_norms: np.ndarray | None = None) -> go.Figure:
    """Left: ‖∂L/∂h_l‖ per hidden layer, predicted vs measured at the first probe and the latest, each relative
    to the last hidden layer. Right: the weight-gradient norms ‖∂L/∂W_l‖ of the same layers, also relative.

    ``predicted``: explain.mlp_theory(cfg)["hidden_backward_profile"] (None where theory does not apply);
    probes: RunSnapshot.probes entries with ``backward_norm``; ``weight_grad_norms``: one per hidden weight.
    """
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=("backward signal ‖∂L/∂h‖ (what theory predicts)",
                                        "weight gradient ‖∂L/∂W‖ (what optimizers see)"))
    n = len(predicted) if predicted is not None else len((probe_now or probe_start or {}).get("backward_norm", []))
    layers = [f"layer {i + 1}" for i in range(n)]
    if predicted is not None:
        fig.add_trace(go.Scatter(x=layers, y=_relative(predicted), name="predicted (mean field)", mode="lines",
                                 line={"color": PREDICTED, "dash": "dash", "width": 3}), row=1, col=1)
    for probe, name, color in ((probe_start, "measured, first probe", MEASURED_START),
                               (probe_now, "measured, latest probe", MEASURED_NOW)):
        if probe is not None and len(probe.get("backward_norm", [])):
            fig.add_trace(go.Scatter(x=layers, y=_relative(probe["backward_norm"]),
                                     name=f"{name} (step {probe['step']})", mode="lines+markers",
                                     line={"color": color}), row=1, col=1)
    if weight_grad_norms is not None and len(weight_grad_norms):
        fig.add_trace(go.Scatter(x=layers[: len(weight_grad_norms)], y=_relative(weight_grad_norms),
                                 name="‖∂L/∂W‖, latest step", mode="lines+markers",
                                 line={"color": WEIGHT_GRAD}), row=1, col=2)
    left = [v for t in fig.data if t.xaxis in (None, "x") for v in np.asarray(t.y, dtype=float)]
    right = [v for t in fig.data if t.xaxis == "x2" for v in np.asarray(t.y, dtype=float)]
    fig.update_yaxes(**log_axis(left, "÷ last hidden layer (log)"), row=1, col=1)
    fig.update_yaxes(**log_axis(right), row=1, col=2)
    fig.update_layout(**T.base_layout("Backward signal per layer: theory vs measurement", height=340))
    fig.update_layout(hovermode="closest")
    return fig


def hidden_weight_grad_norms(names: list[str], grad_norms: np.ndarray) -> np.ndarray:
    """The gradient norms of the hidden layers' weight matrices (the head left out), forward order."""
    idx = [names.index(n) for n in weight_params(names) if not n.startswith("head")]
    return np.asarray(grad_norms, dtype=float)[idx]


def spectral_figure(probes: list[dict], steps: np.ndarray, grad_norm: np.ndarray, bound: float) -> go.Figure:
    """Recurrent matrix over time: spectral radius and largest singular value (left axis), with the pre-clip
    gradient norm (right, log). ``bound`` = 1/γ: above it explosion becomes possible (Pascanu et al. 2013).
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    ps = [p for p in probes if "spectral_radius" in p]
    x = [p["step"] for p in ps]
    gates = list(ps[-1].get("gate_names", ())) if ps else []
    name, hover = "spectral radius ρ(W_hh)", None
    if len(gates) > 1:  # LSTM / GRU: W_hh stacks one square block per gate, each with its own radius
        name = f"spectral radius ρ, largest of the {len(gates)} gate blocks"
        hover = [", ".join(f"{g} {r:.3g}" for g, r in zip(p.get("gate_names", gates), p.get("gate_radii", ()),
                                                           strict=False)) for p in ps]
    fig.add_trace(go.Scatter(x=x, y=[p["spectral_radius"] for p in ps], name=name, hovertext=hover,
                             mode="lines+markers", line={"color": "#7570B3"}), secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=[p["max_singular_value"] for p in ps], name="largest singular value σ₁",
                             mode="lines+markers", line={"color": "#E7298A"}), secondary_y=False)
    if len(x):
        fig.add_trace(go.Scatter(x=[min(x), max(max(x), int(steps[-1]) if len(steps) else 0)], y=[bound, bound],
                                 name=f"σ₁ = 1/γ = {bound:.3g}", mode="lines",
                                 line={"color": T.THRESHOLD, "dash": "dash"}), secondary_y=False)
    g = np.asarray(grad_norm, dtype=float)
    ok = np.isfinite(g) & (g > 0)
    fig.add_trace(go.Scatter(x=np.asarray(steps)[ok], y=g[ok], name="grad norm (pre-clip)", mode="lines",
                             line={"color": T.PRE_CLIP, "width": 1}, opacity=0.6), secondary_y=True)
    bad = ~np.isfinite(g)
    if bad.any():  # shown, never dropped: a marker above the largest finite norm
        top = float(g[ok].max()) * 3 if ok.any() else 1.0
        fig.add_trace(go.Scatter(x=np.asarray(steps)[bad], y=[top] * int(bad.sum()), name="✕ non-finite",
                                 mode="markers", marker={"symbol": "x-thin-open", "size": 12, "line": {"width": 2},
                                                         "color": T.NON_FINITE},
                                 hovertext=[str(v) for v in g[bad]]), secondary_y=True)
    rho = [v for p in ps for v in (p["spectral_radius"], p["max_singular_value"])] + [bound]
    finite = [v for v in rho if np.isfinite(v) and v > 0]
    if finite and max(finite) > 10 * min(finite):  # a linear axis to 6,000 would flatten the line at 1/γ
        fig.update_yaxes(**log_axis(finite, "ρ, σ₁ (log)"), secondary_y=False)
    else:
        fig.update_yaxes(title={"text": "ρ, σ₁", "standoff": 12}, automargin=True, secondary_y=False)
    shown = list(g[ok]) + ([float(g[ok].max()) * 3] if bad.any() and ok.any() else [])
    fig.update_yaxes(**log_axis(shown, "gradient norm (log)"), secondary_y=True)
    fig.update_layout(**T.base_layout("Recurrent matrix: spectral radius and largest singular value"))
    return fig

