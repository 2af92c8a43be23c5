"""The transformer's reading in the theory panel ("Why it explodes" when it did): in place of the MLP's mean-field
prediction, what its attention and its output are doing in plain words, beside the four charts that show it."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from training.run import RunSnapshot

from . import transformer_charts as TC
from .plot import Source, chart

CAPTIONS = {
    "chart_attn_logit": "A logit that climbs by orders of magnitude makes the softmax one-hot: attention stops "
                        "learning (qk-layernorm bounds it).",
    "chart_attn_entropy": "Entropy falling toward 0: each position attends to a single other one (entropy "
                          "collapse). Dotted: attention spread evenly.",
    "chart_log_z": "log Z drifting away from 0 is the output logits growing together; z-loss holds it near 0.",
    "chart_attn_heads": "Left: which heads have collapsed (dark: near 0 nats). Right: where the most peaked head "
                        "looks; a causal model sees only the diagonal and below.",
}


def panel(snap: RunSnapshot, source: Callable[[str], Source | None]) -> None:
    """The reading, then the largest logit and the entropy per layer, log Z, and the last probe's heads."""
    st.markdown(TC.reading(snap))
    for pair in (("chart_attn_logit", "chart_attn_entropy"), ("chart_log_z", "chart_attn_heads")):
        for col, key in zip(st.columns(2, gap="medium"), pair, strict=True):
            with col:
                chart(figure(key, snap), key, CAPTIONS[key], source(key))


def figure(key: str, snap: RunSnapshot):
    """The transformer chart ``key`` of ``snap`` (live_figures dispatches here)."""
    if key == "chart_attn_heads":
        probe = next((p for p in reversed(snap.probes) if "attn_head_entropy" in p), None)
        return TC.attention_heads_figure(probe)
    return TC.FIGURES[key](snap)


KEYS = tuple(CAPTIONS)
