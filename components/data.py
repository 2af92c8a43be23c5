"""Pure helpers shared by the charts and panels: naming, live settings, suggestions, the export table.

Nothing here imports streamlit; everything takes a RunSnapshot, a Config or plain numpy.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from training import export
from training import outcome as O
from training import registry as R
from training.config import FIELDS, Config
from training.data import accuracy_note
from training.run import RunSnapshot, Snapshot

INIT_NAMES = {"kaiming_normal": "He", "xavier_normal": "Xavier"}  # an activation's matched init, as people name it
# Fields a running run can change (z_loss: a transformer's; weight_decay: with adamw; see config.why_not_live).
LIVE_FIELDS = ("clip", "clip_threshold", "clip_norm_type", "lr", "z_loss", "weight_decay")
# A run's badge colour, by its state (runner or store) and, once it ended, by its outcome as the banner says it:
# the status line and the Saved runs page both read these.
STATE_BADGE = {"idle": "gray", "running": "blue", "paused": "orange", "finished": "green", "exploded": "red",
               "error": "red", "stopped": "gray", "interrupted": "violet"}
OUTCOME_BADGE = {"learned": "green", "stuck": "orange", "vanished": "orange", "exploded": "red"}


def lr_grid() -> list[float]:
    """1-2-5 steps per decade over the allowed learning-rate range (float('5e-3') == 0.005, as typed)."""
    lo, hi = FIELDS["lr"].metadata["lo"], FIELDS["lr"].metadata["hi"]
    grid = [float(f"{m}e{e}") for e in range(-6, 2) for m in (1, 2, 5)]
    return [v for v in grid if lo <= v <= hi]


def weight_params(names: list[str]) -> list[str]:
    """The weight matrices, forward order (biases and normalization gains left out)."""
    return [n for n in names if n.rsplit(".", 1)[-1].startswith("weight") and ".norm." not in n]


def short_name(param: str) -> str:
    """'blocks.3.fc.weight' -> 'blocks.3', 'rnn.weight_hh_l0' -> 'rnn W_hh', 'head.weight' -> 'head'."""
    if param.startswith("rnn.weight_"):
        return "rnn W_" + param.split("_")[1]
    return param.replace(".fc", "").removesuffix(".weight")


def live_config(snap: Snapshot) -> Config:
    """The run's config with its live changes applied: what the controls should show on reattach."""
    mode, threshold, norm_type = snap.clip
    return snap.config.replace(clip=mode, clip_threshold=threshold, clip_norm_type=norm_type, lr=snap.lr,
                               z_loss=snap.z_loss, weight_decay=snap.weight_decay)


def explosion(snap: Snapshot) -> dict | None:
    return next((e for e in snap.events if e.get("kind") == "explosion"), None)


def run_outcome(snap: RunSnapshot) -> O.Outcome | None:
    """How the run ended, as the engine classified it at its last step (training/outcome.py); None while it trains
    or when it was stopped. The latest record carries it even when the run's event list is full."""
    return (O.of_events(snap.latest.events) if snap.latest is not None else None) or O.of_events(snap.events)


def _num(v: float | None) -> str:
    return "–" if v is None else format(v, ".3g")


def end_banner(snap: RunSnapshot, who: str = "Training") -> tuple[str, str] | None:
    """(kind, Markdown) of the banner for a run that ended: kind "error" (exploded), "success" (learned) or
    "warning" (stuck, vanished); None while it trains or when stopped. The outcome's words are those of Saved
    runs, the CLI and the map."""
    o = run_outcome(snap)
    if o is None:
        return None
    acc = next((p["test_accuracy"] for p in reversed(snap.probes) if p.get("test_accuracy") is not None), None)
    loss = snap.latest.loss if snap.latest is not None else None
    if o.label == "exploded":
        if o.explosion_step is None:  # diverged without going non-finite
            return "error", f"**{who} {o.words}**: {o.reason}. Try: {suggestion(snap.config)}."
        e = explosion(snap) or {}
        where = f"first non-finite gradient in `{e['param']}`" if e.get("param") else "the loss went non-finite"
        last = (f"last finite gradient norm {_num(e.get('last_finite_grad_norm'))} (step {e['last_finite_step']})"
                if e.get("last_finite_step") is not None else "no finite step")
        return "error", f"**{who} {o.words}**: {where}; {last}. Try: {suggestion(snap.config)}."
    tail = f"loss {_num(loss)}" + (f", {accuracy_label(snap.config).lower()} {acc:.0%}" if acc is not None else "")
    text = f"**{who} finished {snap.step:,} steps: {o.words}**. {tail[0].upper()}{tail[1:]}; {o.reason}."
    if o.label == "learned":
        return "success", text
    return "warning", text + " " + STUCK_HINT[o.label]


STUCK_HINT = {  # what a run that neither exploded nor learned should try first
    "vanished": "The backward signal dies before the first layers: try the init matched to the activation "
                "(Xavier for tanh or sigmoid, He for ReLU).",
    "stuck": "It did not explode, but it did not learn either: check the init and the learning rate.",
}


def suggestion(cfg: Config) -> str:
    """One line on what to change first, from the config that exploded."""
    tips = []
    if cfg.model == "rnn":
        tips.append("clip by norm, or use an LSTM")
    elif cfg.clip == "none":
        tips.append("turn on clipping (by norm, threshold 1.0)")
    if cfg.model == "rnn" and cfg.init == "spectral_radius" and cfg.spectral_radius > 1:
        tips.append(f"bring the spectral radius ({cfg.spectral_radius:g}) down to 1 or below")
    if not cfg.is_recurrent and cfg.init == "normal" and cfg.init_std > 0.1:
        init = R.ACTIVATIONS[cfg.activation].init
        tips.append(f"use {INIT_NAMES[init]} init ({init})" if init in INIT_NAMES else f"use the {init} init")
    if cfg.lr >= 0.1 or len(tips) < 2:
        tips.append(f"lower the learning rate (now {cfg.lr:g})")
    return "; or ".join(tips[:2])


def accuracy_label(cfg: Config) -> str:
    """'Test accuracy', saying what it counts on a regression task: 'Test accuracy (within 0.04 of the target)'."""
    note = accuracy_note(cfg.dataset)
    return f"Test accuracy ({note})" if note else "Test accuracy"


def widths(sizes: tuple[int, ...]) -> str:
    """Hidden widths input → output, repeats counted: (512, 256, 128) → '512-256-128', (256,) * 32 → '32×256'."""
    groups = [(w, len(list(g))) for w, g in itertools.groupby(sizes)]
    return "-".join(str(w) if n == 1 else f"{n}×{w}" for w, n in groups)


def describe(cfg: Config) -> str:
    """A short label for a run: what distinguishes it at a glance."""
    if R.MODELS[cfg.model].text:
        shape = f"L{cfg.n_layers} d{cfg.d_model} h{cfg.n_heads} T{cfg.context} {cfg.norm_position}-LN" + (
            " qk-norm" if cfg.qk_norm else "")
    elif cfg.is_recurrent:
        shape = f"h{cfg.hidden_size} T{cfg.seq_len}"
    else:
        shape = widths(cfg.hidden_sizes)
    arch = f"{cfg.model} {shape}"
    init = f"normal({cfg.init_std:g})" if cfg.init == "normal" else cfg.init
    clip = R.describe_clip(cfg.clip, cfg.clip_threshold, cfg.clip_norm_type)
    act = "gates" if R.MODELS[cfg.model].hidden_activation else cfg.activation  # lstm, gru: their own
    extra = [*(["full batch"] if cfg.full_batch else []), *([f"{cfg.loss}"] if cfg.loss != "auto" else [])]
    return " · ".join([arch, act, init, clip, f"{cfg.optimizer} lr {cfg.lr:g}", *extra])


def matching_preset(cfg: Config) -> str | None:
    for name, p in R.PRESETS.items():
        if Config().replace(**p.overrides) == cfg:
            return name
    return None


def full_resolution_start(snap: Snapshot) -> int | None:
    """First step of the full-resolution window, or None when no steps were folded into wider buckets.

    Buckets sit before the recent rows and are drawn at their last step, so their steps are spaced by the
    bucket width; the recent window is contiguous.
    """
    steps = np.asarray(snap.view["step"])
    gaps = np.nonzero(np.diff(steps) > 1)[0]
    if gaps.size == 0:
        return None
    return int(steps[min(gaps[-1] + 2, steps.size - 1)])


def run_table(snap: Snapshot) -> pd.DataFrame:
    """The run's download in the one export schema (``training/export.py``): one row per step of the view (older
    steps: one row per bucket with its last value, and the last evaluation inside it, from the probes)."""
    steps = np.asarray(snap.view["step"], dtype=np.int64)
    values = np.array(snap.view["value"], dtype=np.float64).reshape(len(steps), len(snap.columns))
    return export.frame(steps, snap.columns, values, evaluations=snap.probes)


def table_csv(snap: Snapshot) -> bytes:
    return export.table_bytes(run_table(snap), "csv")


def table_parquet(snap: Snapshot) -> bytes:
    return export.table_bytes(run_table(snap), "parquet")
