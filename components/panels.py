"""Panels rendered with Streamlit: banners, the chart grid, the runs table, downloads.

Each takes plain data (RunSnapshots, a Config) and draws; none of them reads session state or a runner.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import pandas as pd
import streamlit as st

from training.run import RunSnapshot, Snapshot

from . import live_figures as LF
from .data import describe, end_banner, explosion, full_resolution_start, run_outcome
from .plot import Source, chart

# Every ASCII punctuation character: escaped, none of them can start a link, an image, emphasis, a colour
# directive (:red[...]), an emoji or icon shortcode or LaTeX ($).
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
# The page also turns bare addresses into links after the Markdown is parsed, escapes or not: a zero-width space
# after a scheme, after "www" and before "@" keeps "http://x", "www.x" and "a@x.y" plain text (it shows nothing).
_AUTOLINK = re.compile(r"(?i)(?:https?|ftp|mailto|xmpp)(?=:)|www(?=\.)|(?=@)")
CAPTIONS = {  # one line each: what to look for
    "loss": "Look for the loss climbing by orders of magnitude in a few steps, then ✕ non-finite (dotted: test "
            "accuracy).",
    "grad": "Red: the raw gradient norm; blue: what the optimizer applied. Clipping by norm keeps blue under the "
            "dashed threshold.",
    "grad_multi": "One colour per run: solid before clipping, dotted after. A run clipping by norm stays under "
                  "its own dashed threshold.",
    "heatmap": "One row per weight matrix, input at the bottom: a bright band spreading across rows is the "
               "explosion propagating.",
    "flow": "Bars that climb or fall layer after layer: the gradient explodes or vanishes on its way back to the "
            "input.",
    "weights": "Update ratio ‖Δw‖/‖w‖ near 1e-3 (dashed) is healthy; near 1, every step rewrites the weights.",
    "acts": "A layer whose std collapses to 0, or whose dead/saturated fraction nears 100%, no longer passes "
            "signal.",
    "time": "‖∂L/∂h_t‖ rising toward early t: gradients explode through time; falling: they vanish.",
}


def plain(text: str) -> str:
    """``text`` as Markdown that shows it literally (as text, never a link), on one line: for messages that quote
    what a user typed or put in the URL (st.warning and st.error render Markdown). The quoted values are already
    cut short (ConfigError quotes at most 80 characters)."""
    text = _AUTOLINK.sub("\\g<0>\u200b", " ".join(str(text).split()))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def fmt(v: float | None, spec: str = ".3g") -> str:
    """3 significant digits; inf and NaN as ✕ inf / ✕ nan, never blank."""
    if v is None:
        return "–"
    return format(v, spec) if math.isfinite(v) else f"✕ {v}"


def latest_test_accuracy(snap: Snapshot) -> float | None:
    """The latest evaluated test accuracy: probes between evaluations carry None."""
    return next((p["test_accuracy"] for p in reversed(snap.probes) if p.get("test_accuracy") is not None), None)


BANNER_ICONS = {"error": ":material/local_fire_department:", "success": ":material/check_circle:",
                "warning": ":material/trending_flat:"}


def outcome_banner(snap: RunSnapshot, who: str = "Training") -> None:
    """How the run ended, in the outcome classifier's words (``data.end_banner``): exploded (step, first
    non-finite parameter, last finite norm, what to try), learned, stuck or vanished; an error; or stopped."""
    banner = end_banner(snap, who) if snap.status in ("exploded", "finished") else None
    if banner is not None:
        kind, text = banner
        getattr(st, kind)(text, icon=BANNER_ICONS[kind])
    elif snap.status == "exploded":  # no outcome recorded (cannot happen for a run trained here)
        st.error(f"**{who} exploded**: {(explosion(snap) or {}).get('message', '')}",
                 icon=BANNER_ICONS["error"])
    elif snap.status == "error":
        st.error(f"**{who} stopped with an error** at step {snap.step}: {snap.error}", icon=":material/error:")
    elif snap.status == "stopped":
        st.info(f"**{who} stopped at step {snap.step:,}** of {snap.config.steps:,}. Start trains a new run; its "
                "charts and downloads stay below.", icon=":material/stop_circle:")


def overlay_charts(snaps: Sequence[RunSnapshot], source: Callable[[str], Source | None] | None = None) -> None:
    """Loss and gradient norm, every run in ``snaps`` overlaid (A and B, plus any earlier runs picked).
    ``source``: chart key -> the URL the chart refreshes itself from while the run trains (None: it does not)."""
    source = source or (lambda key: None)
    left, right = st.columns(2, gap="medium")
    with left:
        chart(LF.figure("chart_loss", snaps), "chart_loss", CAPTIONS["loss"], source("chart_loss"))
    with right:
        chart(LF.figure("chart_grad", snaps), "chart_grad", CAPTIONS["grad_multi" if len(snaps) > 1 else "grad"],
              source("chart_grad"))


def detail_charts(snap: RunSnapshot, source: Callable[[str], Source | None] | None = None) -> None:
    """Per-layer charts of one run: heatmap over time, gradient flow now, weights and updates, activations."""
    source = source or (lambda key: None)
    acts = CAPTIONS["time" if snap.config.is_recurrent else "acts"]
    for pair in (("chart_heatmap", "chart_flow"), ("chart_weights", "chart_acts")):
        for col, key in zip(st.columns(2, gap="medium"), pair, strict=True):
            with col:
                chart(LF.figure(key, [snap]), key, acts if key == "chart_acts" else CAPTIONS[key[6:]], source(key))


def _words(snap: RunSnapshot) -> str:
    o = run_outcome(snap)
    return o.words if o else ""


def runs_table(snaps: Sequence[RunSnapshot], current_ids: Sequence[str]) -> None:
    rows = [{"run": s.id, "label": s.label, "": "◀ now" if s.id in current_ids else "", "state": s.status,
             "steps": s.step, "outcome": _words(s),
             "settings": describe(s.config)} for s in snaps]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="runs_table")


def downloads(runs: Sequence[tuple[str, object, Callable[[], object]]], csv_fn: Callable, parquet_fn: Callable) -> None:
    """CSV and Parquet buttons per run, each file built when clicked from a fresh snapshot.

    ``runs``: (label, snapshot now, function returning a fresh snapshot). One note says what the table holds.
    """
    with st.container(horizontal=True, gap="small", key="downloads"):
        for i, (label, snap, snap_fn) in enumerate(runs):
            suffix = f" ({label})" if label else ""
            st.download_button(f"CSV{suffix}", lambda f=snap_fn: csv_fn(f()), file_name=f"{snap.id}.csv",
                               mime="text/csv", key=f"dl_csv{i}", on_click="ignore", icon=":material/download:")
            st.download_button(f"Parquet{suffix}", lambda f=snap_fn: parquet_fn(f()), file_name=f"{snap.id}.parquet",
                               mime="application/vnd.apache.parquet", key=f"dl_parquet{i}", on_click="ignore",
                               icon=":material/download:")
    note = ("One row per step, every column of the charts (loss, norms before and after clipping, per-layer "
            "gradient and weight norms, update ratios); inf and NaN are kept.")
    starts = [s for s in (full_resolution_start(snap) for _, snap, _ in runs) if s is not None]
    if starts:
        note += (f" Rows before step {max(starts):,} are decimated (the run is longer than the full-resolution "
                 "window): one row per bucket of steps, holding the bucket's last value.")
    st.caption(note)
