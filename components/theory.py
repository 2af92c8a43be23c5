"""Why it explodes: the mean-field prediction beside the measured signal, and the recurrent matrix's spectrum.

Figure builders only (plain data in, Plotly figure out); the dashboard's theory panel composes them. As in
``components/charts.py``, each figure is plain dicts (the two panels and the right-hand axis written out with
their domains, as ``make_subplots`` would lay them out) handed to ``go.Figure`` once: Plotly validates every
property on each ``add_trace``/``update_*`` call, which made building a figure several times slower.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

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


def _scatter(x, y, **props) -> dict:
    return {"type": "scatter", "x": x, "y": y, **props}


def _panel_title(text: str, x: float) -> dict:
    """A panel's title above it, as ``make_subplots(subplot_titles=...)`` writes one."""
    return {"text": text, "x": x, "xanchor": "center", "xref": "paper", "y": 1.0, "yanchor": "bottom",
            "yref": "paper", "showarrow": False, "font": {"size": 16}}


def _values(traces: list[dict]) -> list[float]:
    return [v for t in traces for v in np.asarray(t["y"], dtype=float)]


def backward_signal_figure(predicted: list[float] | None, probe_start: dict | None, probe_now: dict | None,
                           weight_grad_norms: np.ndarray | None = None) -> go.Figure:
    """Left: ‖∂L/∂h_l‖ per hidden layer, predicted vs measured at the first probe and the latest, each relative
    to the last hidden layer. Right: the weight-gradient norms ‖∂L/∂W_l‖ of the same layers, also relative.

    ``predicted``: explain.mlp_theory(cfg)["hidden_backward_profile"] (None where theory does not apply);
    probes: RunSnapshot.probes entries with ``backward_norm``; ``weight_grad_norms``: one per hidden weight.
    """
    n = len(predicted) if predicted is not None else len((probe_now or probe_start or {}).get("backward_norm", []))
    layers = [f"layer {i + 1}" for i in range(n)]
    left, right = [], []
    if predicted is not None:
        left.append(_scatter(layers, _relative(predicted), name="predicted (mean field)", mode="lines",
                             line={"color": PREDICTED, "dash": "dash", "width": 3}))
    for probe, name, color in ((probe_start, "measured, first probe", MEASURED_START),
                               (probe_now, "measured, latest probe", MEASURED_NOW)):
        if probe is not None and len(probe.get("backward_norm", [])):
            left.append(_scatter(layers, _relative(probe["backward_norm"]), name=f"{name} (step {probe['step']})",
                                 mode="lines+markers", line={"color": color}))
    if weight_grad_norms is not None and len(weight_grad_norms):
        right.append(_scatter(layers[: len(weight_grad_norms)], _relative(weight_grad_norms),
                              name="‖∂L/∂W‖, latest step", mode="lines+markers", line={"color": WEIGHT_GRAD}))
    layout = {**T.base_layout("Backward signal per layer: theory vs measurement", height=340),
              "hovermode": "closest",
              "xaxis": {"anchor": "y", "domain": [0.0, 0.46]}, "xaxis2": {"anchor": "y2", "domain": [0.54, 1.0]},
              "yaxis": {"anchor": "x", "domain": [0.0, 1.0], **log_axis(_values(left), "÷ last hidden layer (log)")},
              "yaxis2": {"anchor": "x2", "domain": [0.0, 1.0], **log_axis(_values(right))},
              "annotations": [_panel_title("backward signal ‖∂L/∂h‖ (what theory predicts)", 0.23),
                              _panel_title("weight gradient ‖∂L/∂W‖ (what optimizers see)", 0.77)]}
    data = [{**t, "xaxis": "x", "yaxis": "y"} for t in left] + [{**t, "xaxis": "x2", "yaxis": "y2"} for t in right]
    return go.Figure(data=data, layout=layout)


def hidden_weight_grad_norms(names: list[str], grad_norms: np.ndarray) -> np.ndarray:
    """The gradient norms of the hidden layers' weight matrices (the head left out), forward order."""
    idx = [names.index(n) for n in weight_params(names) if not n.startswith("head")]
    return np.asarray(grad_norms, dtype=float)[idx]


def spectral_figure(probes: list[dict], steps: np.ndarray, grad_norm: np.ndarray, bound: float) -> go.Figure:
    """Recurrent matrix over time: spectral radius and largest singular value (left axis), with the pre-clip
    gradient norm (right, log). ``bound`` = 1/γ: above it explosion becomes possible (Pascanu et al. 2013).
    """
    ps = [p for p in probes if "spectral_radius" in p]
    x = [p["step"] for p in ps]
    left = _spectral_traces(ps, x, steps, bound)
    right, shown = _grad_norm_traces(np.asarray(steps), np.asarray(grad_norm, dtype=float))
    rho = [v for p in ps for v in (p["spectral_radius"], p["max_singular_value"])] + [bound]
    finite = [v for v in rho if np.isfinite(v) and v > 0]
    if finite and max(finite) > 10 * min(finite):  # a linear axis to 6,000 would flatten the line at 1/γ
        rho_axis = log_axis(finite, "ρ, σ₁ (log)")
    else:
        rho_axis = {"title": {"text": "ρ, σ₁", "standoff": 12}, "automargin": True}
    # One plot with a second y axis on the right, as make_subplots(specs=[[{"secondary_y": True}]]) lays it out.
    layout = {**T.base_layout("Recurrent matrix: spectral radius and largest singular value"),
              "xaxis": {"anchor": "y", "domain": [0.0, 0.94]},
              "yaxis": {"anchor": "x", "domain": [0.0, 1.0], **rho_axis},
              "yaxis2": {"anchor": "x", "overlaying": "y", "side": "right",
                         **log_axis(shown, "gradient norm (log)")}}
    data = [{**t, "xaxis": "x", "yaxis": "y"} for t in left] + [{**t, "xaxis": "x", "yaxis": "y2"} for t in right]
    return go.Figure(data=data, layout=layout)


def _spectral_traces(ps: list[dict], x: list[int], steps: np.ndarray, bound: float) -> list[dict]:
    """ρ and σ₁ at each probe, and the line σ₁ = 1/γ across them."""
    gates = list(ps[-1].get("gate_names", ())) if ps else []
    name, hover = "spectral radius ρ(W_hh)", None
    if len(gates) > 1:  # LSTM / GRU: W_hh stacks one square block per gate, each with its own radius
        name = f"spectral radius ρ, largest of the {len(gates)} gate blocks"
        hover = [", ".join(f"{g} {r:.3g}" for g, r in zip(p.get("gate_names", gates), p.get("gate_radii", ()),
                                                           strict=False)) for p in ps]
    out = [_scatter(x, [p["spectral_radius"] for p in ps], name=name, mode="lines+markers",
                    line={"color": "#7570B3"}, **({"hovertext": hover} if hover is not None else {})),
           _scatter(x, [p["max_singular_value"] for p in ps], name="largest singular value σ₁",
                    mode="lines+markers", line={"color": "#E7298A"})]
    if len(x):
        out.append(_scatter([min(x), max(max(x), int(steps[-1]) if len(steps) else 0)], [bound, bound],
                            name=f"σ₁ = 1/γ = {bound:.3g}", mode="lines", line={"color": T.THRESHOLD, "dash": "dash"}))
    return out


def _grad_norm_traces(steps: np.ndarray, g: np.ndarray) -> tuple[list[dict], list[float]]:
    """The pre-clip gradient norm, its non-finite steps as markers above the largest finite norm (shown, never
    dropped), and the values its log axis spans."""
    ok = np.isfinite(g) & (g > 0)
    out = [_scatter(steps[ok], g[ok], name="grad norm (pre-clip)", mode="lines",
                    line={"color": T.PRE_CLIP, "width": 1}, opacity=0.6)]
    bad = ~np.isfinite(g)
    if bad.any():
        top = float(g[ok].max()) * 3 if ok.any() else 1.0
        out.append(_scatter(steps[bad], [top] * int(bad.sum()), name="✕ non-finite", mode="markers",
                            marker={"symbol": "x-thin-open", "size": 12, "line": {"width": 2}, "color": T.NON_FINITE},
                            hovertext=[str(v) for v in g[bad]]))
    return out, list(g[ok]) + ([float(g[ok].max()) * 3] if bad.any() and ok.any() else [])


def sharpness_figure(steps, sharpness, lr_steps, lrs, factor: float, precond: bool,
                     climb: int | None = None) -> go.Figure:
    """The sharpness at each probe against the edge of stability, factor/lr at every step (the learning rate can
    change live), log y. ``precond``: Adam's preconditioned sharpness, whose edge is 38/lr; ``climb``: the step
    where the loss started its climb to an explosion (a vertical line), or None.
    """
    s, y = np.asarray(steps), np.asarray(sharpness, dtype=float)
    probed = ~np.isnan(y)  # NaN between probes; ±inf (an overflowed curvature) is kept and shown as ✕
    s, y = s[probed], y[probed]
    edge = factor / np.asarray(lrs, dtype=float)
    edge_name = f"{factor:.3g}/lr"
    name = "preconditioned sharpness λmax(P⁻¹H)" if precond else "sharpness λmax(H)"
    ok = np.isfinite(y) & (y > 0)
    data = [_scatter(s[ok], y[ok], name=name, mode="lines+markers", marker={"size": 4}, line={"color": "#7570B3"}),
            _scatter(lr_steps, edge, name=f"edge of stability {edge_name}", mode="lines",
                     line={"color": T.THRESHOLD, "dash": "dash", "width": 1.5})]
    bad = ~ok
    top = max([*y[ok], *edge[np.isfinite(edge)], 1.0]) * 3
    if bad.any():
        data.append(_scatter(s[bad], [top] * int(bad.sum()), name="✕ non-finite or ≤ 0", mode="markers",
                             marker={"symbol": "x-thin-open", "size": 12, "line": {"width": 2}, "color": T.NON_FINITE},
                             hovertext=[f"{v:.3g}" for v in y[bad]]))
    layout = {**T.base_layout(f"Sharpness against the edge of stability ({edge_name})"),
              "yaxis": log_axis([*y[ok], *edge, top if bad.any() else np.nan], "top Hessian eigenvalue (log)"),
              "xaxis": {"title": {"text": "step"}}}
    if climb is not None:
        layout["shapes"] = [{"type": "line", "xref": "x", "yref": "paper", "x0": climb, "x1": climb, "y0": 0, "y1": 1,
                             "line": {"color": T.EVENT_COLORS["explosion"], "width": 1, "dash": "dot"}}]
        layout["annotations"] = [{"x": climb, "xref": "x", "y": 1.0, "yref": "paper", "showarrow": False,
                                  "text": "loss starts climbing", "xanchor": "left", "yanchor": "top",
                                  "font": {"size": 10, "color": T.EVENT_COLORS["explosion"]}}]
    return go.Figure(data=data, layout=layout)
