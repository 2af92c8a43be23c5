"""The transformer's charts: the largest attention logit and the attention entropy per layer over time, the output's
log Z, and a probe's attention per head with the most peaked head's pattern. One function per chart, a snapshot or a
probe dict in, a Plotly figure out; a run without the columns (any other model) draws a waiting chart.

Requires: the snapshot's ``attn_logit_max/<layer>``, ``attn_entropy/<layer>`` and ``logit_log_z`` columns
(training/transformer.py); the probe's ``attn_head_entropy``, ``attn_pattern``, ``attn_pattern_layer`` and
``attn_pattern_head``.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from training.run import Snapshot
from training.text import VOCAB_SIZE

from . import chart_parts as P
from . import theme as T

LOGIT, ENTROPY, LOG_Z = "attn_logit_max/", "attn_entropy/", "logit_log_z"
LAYER_COLORS = T.RUN_COLORS


def layers(snap: Snapshot, prefix: str) -> list[str]:
    return [c for c in snap.columns if c.startswith(prefix)]


def uniform_entropy(context: int) -> float:
    """Mean entropy of attention spread evenly over every allowed position: row q sees q + 1, ln(q + 1) nats."""
    return float(np.mean(np.log(np.arange(1, context + 1))))


def _waiting(title: str) -> go.Figure:
    layout = {**T.base_layout(title), "xaxis": {"visible": False}, "yaxis": {"visible": False},
              "annotations": [{"text": "waiting for the first step", "showarrow": False, "xref": "paper",
                               "yref": "paper", "x": 0.5, "y": 0.5, "font": {"color": T.ZERO}}]}
    return go.Figure(layout=layout)


def _per_layer(snap: Snapshot, prefix: str, which: str, title: str, yaxis: dict, log: bool,
               refs: list[tuple[float, str]]) -> go.Figure:
    """One line per layer of ``prefix`` columns (``which``: the bucket's hi, lo or last value), dotted reference
    lines, and the lr / clip change markers."""
    cols = layers(snap, prefix)
    if not cols or snap.latest is None:
        return _waiting(title)
    data, marks = [], P.Marks()
    for i, col in enumerate(cols):
        name = f"layer {col[len(prefix):]}" if col != prefix else "mean log Z"
        x, y = marks.line(*snap.series(col, which), log=log, label=name)
        data.append(P.scatter(x, y, mode="lines", name=name,
                              line={"color": LAYER_COLORS[i % len(LAYER_COLORS)], "width": 1.6}))
    data += marks.traces(log=log)
    steps = snap.view["step"]
    for value, label in refs:
        data.append(P.scatter([steps[0], steps[-1]], [value, value], mode="lines", name=label, hoverinfo="name",
                              line={"color": T.REFERENCE, "width": 1, "dash": "dot"}))
    layout = {**T.base_layout(title), "xaxis": P.xaxis(title={"text": "step"}), "yaxis": yaxis}
    data += P.event_lines(layout, [snap], False)
    return P.figure(data, layout)


def attn_logit_figure(snap: Snapshot) -> go.Figure:
    """Largest attention logit q·k/√d_head per layer (log y; a bucket of a long run keeps its largest)."""
    return _per_layer(snap, LOGIT, "hi", "Largest attention logit per layer", P.yaxis("max q·k/√d", type="log"),
                      True, [])


def attn_entropy_figure(snap: Snapshot) -> go.Figure:
    """Mean attention entropy per layer (a bucket keeps its smallest), under the entropy of uniform attention."""
    top = uniform_entropy(snap.config.context)
    return _per_layer(snap, ENTROPY, "lo", "Attention entropy per layer", P.yaxis("nats", rangemode="tozero"),
                      False, [(top, f"uniform attention {top:.2f}")])


def log_z_figure(snap: Snapshot) -> go.Figure:
    """The output's mean log Z (log-sum-exp of the logits): ln V at init, 0 where z-loss pulls it."""
    return _per_layer(snap, LOG_Z, "value", "Output log Z", P.yaxis("mean log Z"), False,
                      [(math.log(VOCAB_SIZE), f"ln {VOCAB_SIZE} (uniform output)"), (0.0, "0 (z-loss target)")])


def attention_heads_figure(probe: dict | None) -> go.Figure:
    """Left: attention entropy per head and layer at the probe; right: the most peaked head's attention over the
    first positions of one window (row: the position attending; column: the one attended to)."""
    title = "Attention per head at the last probe"
    if not probe or "attn_head_entropy" not in probe:
        return _waiting(title)
    ent, pattern = np.asarray(probe["attn_head_entropy"]), np.asarray(probe["attn_pattern"])
    layer, head = probe["attn_pattern_layer"], probe["attn_pattern_head"]
    heads = [f"head {h}" for h in range(ent.shape[1])]
    data = [{"type": "heatmap", "z": ent, "x": heads, "y": [f"layer {i}" for i in range(ent.shape[0])],
             "colorscale": T.HEATMAP_SCALE, "zmin": 0, "colorbar": {"title": {"text": "nats"}, "x": 0.44, "len": 0.9},
             "xaxis": "x", "yaxis": "y", "hovertemplate": "%{y}, %{x}: %{z:.3g} nats<extra></extra>"},
            {"type": "heatmap", "z": pattern, "colorscale": T.HEATMAP_SCALE, "zmin": 0, "zmax": 1,
             "colorbar": {"title": {"text": "weight"}, "x": 1.0, "len": 0.9}, "xaxis": "x2", "yaxis": "y2",
             "hovertemplate": "position %{y} attends to %{x}: %{z:.2f}<extra></extra>"}]
    layout = {**T.base_layout(f"{title} (step {probe['step']})"),
              "xaxis": P.xaxis(domain=[0.0, 0.4], anchor="y", title={"text": "entropy per head"}),
              "yaxis": {"anchor": "x", "domain": [0.0, 1.0]},
              "xaxis2": P.xaxis(domain=[0.56, 0.94], anchor="y2",
                                title={"text": f"layer {layer}, head {head}: attended position"}),
              "yaxis2": {"anchor": "x2", "domain": [0.0, 1.0], "autorange": "reversed", "title": {"text": "position"}}}
    return P.figure(data, layout)


def reading(snap: Snapshot) -> str:
    """What the attention and the output are doing now, in plain words, with the numbers behind them."""
    if snap.latest is None or not layers(snap, LOGIT):
        return "Waiting for the first step."
    row = dict(zip(snap.columns, snap.view["value"][-1], strict=True))
    first = dict(zip(snap.columns, snap.view["value"][0], strict=True))
    logit = max(row[c] for c in layers(snap, LOGIT))
    logit0 = max(first[c] for c in layers(snap, LOGIT))
    entropy = min(row[c] for c in layers(snap, ENTROPY))
    uniform, log_z = uniform_entropy(snap.config.context), row[LOG_Z]
    words = [f"**Attention logits.** The largest q·k/√d is {logit:.3g}, from {logit0:.3g} at the start."]
    if logit > 10 * logit0 and logit > 50:
        words.append("It has grown more than tenfold: the softmax then puts almost all its weight on one position, "
                     "its gradient all but vanishes, and attention stops learning. qk-layernorm normalises queries "
                     "and keys so their product cannot grow like this (Wortsman et al. 2023).")
    words.append(f"**Attention entropy.** The most focused layer spreads its attention over e^{entropy:.2f} ≈ "
                 f"{math.exp(entropy):.3g} positions on average (uniform attention: e^{uniform:.2f}).")
    if entropy < 0.1:
        words.append("Its entropy has collapsed toward 0: each position attends to a single other one, the "
                     "entropy collapse that comes with growing logits.")
    words.append(f"**Output log Z** is {log_z:.3g} (ln {VOCAB_SIZE} = {math.log(VOCAB_SIZE):.2f} at init).")
    if abs(log_z) > 5:
        words.append("It has drifted far from 0: the output logits grow together, in a direction the loss does not "
                     "see, until they overflow; z-loss penalises log Z² and holds it near 0.")
    if snap.config.norm_position == "post" and snap.config.warmup_steps == 0:
        words.append("**Post-LN without warmup**: at init the gradients near the output are as large as those "
                     "near the input, and Adam's first steps at the full learning rate can leave it stuck at the "
                     "character frequencies (Xiong et al. 2020); a warmup of the learning rate lets it train.")
    return " ".join(words)


FIGURES = {"chart_attn_logit": attn_logit_figure, "chart_attn_entropy": attn_entropy_figure,
           "chart_log_z": log_z_figure}  # snapshot -> figure; chart_attn_heads reads the latest probe
