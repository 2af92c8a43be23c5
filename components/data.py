"""Pure helpers shared by the charts and panels: naming, live settings, suggestions, the export table.

Nothing here imports streamlit; everything takes a RunSnapshot, a Config or plain numpy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training import registry as R
from training.config import FIELDS, Config

RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "selu")
LIVE_FIELDS = ("clip", "clip_threshold", "clip_norm_type", "lr")  # fields a running run can change


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


def live_clip(snap) -> tuple[str, float, str]:
    """The clipping a run uses now: its config, updated by its last live change."""
    cfg = snap.config
    clip = (cfg.clip, cfg.clip_threshold, cfg.clip_norm_type)
    for e in snap.events:
        if e.get("kind") == "config_change" and e.get("field") == "clip":
            clip = tuple(e["new"])
    return clip


def live_lr(snap) -> float:
    lr = snap.config.lr
    for e in snap.events:
        if e.get("kind") == "config_change" and e.get("field") == "lr":
            lr = e["new"]
    return lr


def live_config(snap) -> Config:
    """The run's config with its live changes applied: what the controls should show on reattach."""
    mode, threshold, norm_type = live_clip(snap)
    return snap.config.replace(clip=mode, clip_threshold=threshold, clip_norm_type=norm_type, lr=live_lr(snap))


def explosion(snap) -> dict | None:
    return next((e for e in snap.events if e.get("kind") == "explosion"), None)


def suggestion(cfg: Config) -> str:
    """One line on what to change first, from the config that exploded."""
    tips = []
    if cfg.model == "rnn":
        tips.append("clip by norm, or use an LSTM")
    elif cfg.clip == "none":
        tips.append("turn on clipping (by norm, threshold 1.0)")
    if cfg.model == "rnn" and cfg.init == "spectral_radius" and cfg.spectral_radius > 1:
        tips.append(f"bring the spectral radius ({cfg.spectral_radius:g}) down to 1 or below")
    if cfg.model == "mlp" and cfg.init == "normal" and cfg.init_std > 0.1:
        tips.append("use He init (kaiming_normal)" if cfg.activation in RELU_FAMILY
                    else "use Xavier init (xavier_normal)")
    if cfg.lr >= 0.1 or len(tips) < 2:
        tips.append(f"lower the learning rate (now {cfg.lr:g})")
    return "; or ".join(tips[:2])


def describe(cfg: Config) -> str:
    """A short label for a run: what distinguishes it at a glance."""
    arch = (f"mlp {len(cfg.hidden_sizes)}×{max(cfg.hidden_sizes)}" if cfg.model == "mlp"
            else f"{cfg.model} h{cfg.hidden_size} T{cfg.seq_len}")
    init = f"normal({cfg.init_std:g})" if cfg.init == "normal" else cfg.init
    clip = {"none": "no clip", "norm": f"clip ‖g‖≤{cfg.clip_threshold:g}",
            "value": f"clip ±{cfg.clip_threshold:g}"}[cfg.clip]
    act = cfg.activation if cfg.model in ("mlp", "rnn") else "gates"
    return f"{arch} · {act} · {init} · {clip} · {cfg.optimizer} lr {cfg.lr:g}"


def matching_preset(cfg: Config) -> str | None:
    for name, p in R.PRESETS.items():
        if Config().replace(**p.overrides) == cfg:
            return name
    return None


def full_resolution_start(snap) -> int | None:
    """First step of the full-resolution window, or None when no steps were folded into wider buckets.

    Buckets sit before the recent rows and are drawn at their last step, so their steps are spaced by the
    bucket width; the recent window is contiguous.
    """
    steps = np.asarray(snap.view["step"])
    gaps = np.nonzero(np.diff(steps) > 1)[0]
    if gaps.size == 0:
        return None
    return int(steps[min(gaps[-1] + 2, steps.size - 1)])


def run_table(snap) -> pd.DataFrame:
    """One row per step of the view: step plus every column (older steps: last value of each bucket)."""
    df = pd.DataFrame(snap.view["value"], columns=snap.columns)
    df.insert(0, "step", np.asarray(snap.view["step"], dtype=np.int64))
    return df


def table_csv(snap) -> bytes:
    return run_table(snap).to_csv(index=False, na_rep="nan").encode()


def table_parquet(snap) -> bytes:
    return run_table(snap).to_parquet(index=False)
