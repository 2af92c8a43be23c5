"""The theory panel of the live lab ("Why it explodes" when it did): theory beside the measurement, for the run
in the detail view; its title says what the run did.

Drawn inside the detail fragment, so it refreshes at that fragment's (slow) cadence, never faster.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from training import explain, theory
from training import outcome as O
from training import registry as R
from training import sharpness as SH
from training.config import Config
from training.run import RunSnapshot, Snapshot

from . import theory as TH
from . import transformer_panel
from .data import run_outcome
from .plot import Source, chart

FLAT_NOTE = ("Why the right panel looks flat while the left one compounds: ‖∂L/∂W_l‖ = ‖∂L/∂h_l‖ × the size of "
             "layer l's input, and a growing (or shrinking) forward signal cancels most of the backward signal's "
             "layer-to-layer change. ‖∂L/∂h‖ is the quantity theory predicts.")
GATED_NOTE = ("LSTM and GRU gates change the picture: the cell state's path is additive and gated, so the bound "
              "below (from the tanh in the candidate update) is only indicative.")


@lru_cache(maxsize=32)
def _mlp_theory(cfg: Config) -> dict | None:
    """Cached per config: the prediction loads the dataset (~1 s) and the config is frozen, hence hashable."""
    return explain.mlp_theory(cfg)


@lru_cache(maxsize=16)
def _pascanu(activation: str) -> tuple[float, str]:
    return theory.pascanu_condition(activation)


def theory_panel(snap: RunSnapshot, source: Callable[[str], Source | None] | None = None) -> None:
    """MLP: predicted vs measured ‖∂L/∂h‖ per hidden layer; recurrent: the recurrent matrix's spectrum; transformer:
    its attention and output in words and charts. ``source``: chart key -> the URL its chart refreshes itself from
    while the run trains (or None)."""
    cfg = snap.config
    source = source or (lambda key: None)
    with st.expander(panel_title(snap), expanded=True, icon=":material/functions:"):
        if R.MODELS[cfg.model].text:
            transformer_panel.panel(snap, source)
        elif cfg.is_recurrent:
            _recurrent(snap, cfg, source("chart_spectral"))
        else:
            _mlp(snap, cfg, source("chart_theory"))
        if SH.edge_column(cfg.optimizer) in snap.columns:
            _sharpness(snap, source("chart_sharpness"))


TITLES = {  # by the run's outcome (training/outcome.py): the panel explains what the run did
    "exploded": "Why it explodes",
    "vanished": "Why it vanishes",
    "learned": "Gradient flow: why it could learn",
    "stuck": "Gradient flow: it did not learn",
}


def panel_title(snap: RunSnapshot) -> str:
    """The panel's title from what the run did: its outcome once it ended, else what the backward signal
    measured at the latest probe does (first hidden layer or time step ÷ last: above 10 growing, below 0.1
    fading), else neutral. Never "Why it explodes" for a healthy or vanishing net."""
    o = run_outcome(snap) if snap.status in ("exploded", "finished") else None
    if o is not None:
        return TITLES[o.label]
    if R.MODELS[snap.config.model].text:  # its reading is about attention and the output, not the signal's flow
        return "Attention and output logits: what could explode"
    probe = next((p for p in reversed(snap.probes) if len(p.get("backward_norm", []))), None)
    b = np.asarray((probe or {}).get("time_backward_norm", (probe or {}).get("backward_norm", [])), dtype=float)
    if len(b) > 1 and np.isfinite(b).all() and b[-1] > 0:
        ratio = b[0] / b[-1]
        if ratio > 10:
            return "Gradient flow: growing toward the input"
        if ratio < 0.1:
            return "Gradient flow: fading toward the input"
    return "Gradient flow: theory beside measurement"


def _mlp(snap: RunSnapshot, cfg: Config, source: Source | None) -> None:
    why_not = explain.not_applicable(cfg)
    pred = None if why_not else _mlp_theory(cfg)
    if pred is not None:
        st.markdown(pred["reading"])
    else:
        st.info(f"No mean-field prediction here: {why_not}. The measured profile is still shown.",
                icon=":material/info:")
    fig, grads_step = _mlp_figure(snap)
    chart(fig, "chart_theory", FLAT_NOTE, source)
    if grads_step is not None and snap.latest is not None and grads_step != snap.latest.step:
        st.caption(f"‖∂L/∂W‖ on the right: step {grads_step}, the last step whose gradients were all finite.")


def mlp_figure(snap: RunSnapshot) -> go.Figure:
    """Predicted and measured ‖∂L/∂h‖ per hidden layer, and ‖∂L/∂W‖ at the last finite step."""
    return _mlp_figure(snap)[0]


def _mlp_figure(snap: RunSnapshot) -> tuple[go.Figure, int | None]:
    """The figure, and the step its ‖∂L/∂W‖ comes from."""
    cfg = snap.config
    pred = None if explain.not_applicable(cfg) else _mlp_theory(cfg)
    probes = [p for p in snap.probes if len(p.get("backward_norm", []))]
    grads, grads_step = last_finite_weight_grads(snap)
    fig = TH.backward_signal_figure(pred["hidden_backward_profile"] if pred else None,
                                    probes[0] if probes else None, probes[-1] if len(probes) > 1 else None, grads)
    return fig, grads_step


def last_finite_weight_grads(snap: RunSnapshot) -> tuple[np.ndarray | None, int | None]:
    """The hidden layers' weight-gradient norms at the latest step, or at the last step where all were finite
    (after an explosion the latest are inf/NaN and would draw nothing); (None, None) without any."""
    if snap.latest is None:
        return None, None
    now = TH.hidden_weight_grad_norms(snap.names, snap.latest.grad_norms)
    if np.isfinite(now).all():
        return now, snap.latest.step
    steps = snap.view["step"]
    rows = np.stack([snap.series(f"grad_norm/{n}")[1] for n in snap.names], axis=1)  # steps x params
    hidden = np.stack([TH.hidden_weight_grad_norms(snap.names, r) for r in rows]) if len(rows) else rows
    ok = np.flatnonzero(np.isfinite(hidden).all(axis=1)) if len(hidden) else []
    return (hidden[ok[-1]], int(steps[ok[-1]])) if len(ok) else (now, snap.latest.step)


def _recurrent(snap: RunSnapshot, cfg: Config, source: Source | None) -> None:
    gamma, sentence = _pascanu(R.hidden_activation(cfg))
    if len(R.MODELS[cfg.model].gates) > 1:
        st.markdown(GATED_NOTE)
    st.markdown(sentence)
    chart(spectral(snap), "chart_spectral", "Above the dashed line the recurrent matrix can amplify the backward "
                                            "signal at every time step; the gradient norm (right axis) follows.",
          source)


def spectral(snap: Snapshot) -> go.Figure:
    """The recurrent matrix's spectral norm over the probes, the gradient norm, and the 1/gamma bound."""
    gamma, _ = _pascanu(R.hidden_activation(snap.config))
    steps, pre_clip = snap.series("grad_norm_pre_clip")
    return TH.spectral_figure(snap.probes, steps, pre_clip, bound=1.0 / gamma)


SHARPNESS_NOTE = ("Gradient descent with step size lr diverges along any direction whose curvature exceeds 2/lr "
                  "(with momentum β, (2 + 2β)/lr; for Adam, its preconditioned sharpness against 38/lr). The "
                  "dotted line marks where the loss started the climb that ended in an explosion.")


def _sharpness(snap: RunSnapshot, source: Source | None) -> None:
    st.markdown(sharpness_words(snap))
    chart(sharpness(snap), "chart_sharpness", SHARPNESS_NOTE, source)


def _sharpness_view(snap: Snapshot) -> dict:
    """The probes' sharpness, the edge at every step, the climb's start, and the probe the panel reads: the last
    one at or before the climb when the run exploded, else the latest finite one."""
    cfg = snap.config
    # "hi": a bucket of a long run keeps its largest probe, where its last row (between probes) is NaN
    steps, values = snap.series(SH.edge_column(cfg.optimizer), "hi")
    lr_steps, lrs = snap.series("lr")
    boom = next((e["step"] for e in snap.events if e.get("kind") == "explosion"), None)
    climb = O.climb_start(*snap.series("loss"), boom)
    factor = SH.edge_factor(cfg.optimizer, cfg.momentum)
    read = np.flatnonzero(~np.isnan(values) & (steps <= (climb if climb is not None else np.inf)))
    at = int(read[-1]) if len(read) else None
    return {"steps": steps, "values": values, "lr_steps": lr_steps, "lrs": lrs, "factor": factor, "climb": climb,
            "read": None if at is None else (float(values[at]), factor / float(lrs[at]))}


def sharpness_words(snap: Snapshot) -> str:
    """What the sharpness says about this run, in a sentence or two."""
    v = _sharpness_view(snap)
    if v["read"] is None:
        return "Sharpness: waiting for the first probe."
    return explain.sharpness_reading(*v["read"], f"{v['factor']:.3g}/lr")


def sharpness(snap: Snapshot) -> go.Figure:
    v = _sharpness_view(snap)
    return TH.sharpness_figure(v["steps"], v["values"], v["lr_steps"], v["lrs"], v["factor"],
                               snap.config.optimizer == "adam", v["climb"])
