"""The status line of the live run: state, step, speed, clipping and learning rate, then loss, gradient norms
and test accuracy, for each run of the tab.

A Streamlit rerun costs the page ~60 ms of browser time and the server a script run, even when it draws nothing
(docs/benchmarks.md, P2): rerunning a fragment every 0.3 s to move a step counter cost the training thread ~10%
of its speed. So the line is an element that keeps itself current (components/live.js): while the run is alive
it fetches its numbers from ``GET /api/live/<run id>`` (served beside the app by ``serve.py``) four times a
second and rewrites its own text; every rerun of the page also hands it a fresh copy. The numbers are formatted
here, in Python, for both, so the page shows the same text either way. When the poll sees a run change state, the
element triggers one rerun of the page, which brings the banners, the buttons and the URL up to date.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from training.layout import clipped_share, clipped_words
from training.registry import describe_clip
from training.run import RunSnapshot
from training.runner import LIVE, Runner

from .data import OUTCOME_BADGE, STATE_BADGE, accuracy_label, run_outcome
from .panels import fmt, latest_test_accuracy
from .plot import JS, base_path
from .theme import run_color

POLL_S = 0.25  # a step waits at most this long (plus the fetch) to show
API_PREFIX = "/api/live/"
# A runner whose runs have all ended still has its thread for a few ms (it releases the runs): waited for, so the
# route and the page both see the runner ended, and the end costs one rerun rather than two.
ENDING_S = 0.5

_element = st.components.v2.component("gel_status", html="", css=Path(__file__).with_name("live.css").read_text(),
                                      js=JS, isolate_styles=False)


def run_status(snap: RunSnapshot, title: str | None = None, color: str | None = None) -> dict:
    """One run's line as display text (plain strings and ints, JSON-safe: inf and NaN arrive as text)."""
    clip = describe_clip(*snap.clip)
    rec = snap.latest
    acc = latest_test_accuracy(snap)
    # An ended run is named by the outcome classifier, as on the banner, Saved runs, the CLI and the map; an
    # exploded run shows its explosion step (docs/science.md), not the count of rows it recorded (one more).
    o = run_outcome(snap) if snap.status in ("exploded", "finished") else None
    shown = o.explosion_step if o is not None and o.explosion_step is not None else snap.step
    return {
        "id": snap.id, "title": title, "color": color,
        "state": snap.status, "label": o.words if o else snap.status,
        "badge": OUTCOME_BADGE[o.label] if o else STATE_BADGE.get(snap.status, "gray"),
        "step": snap.step, "step_text": f"{shown:,}", "steps_text": f"{snap.config.steps:,}",
        # A paused run has no speed: the rate of its last steps would read as if it still trained.
        "detail": ("" if snap.status == "paused" else f"{snap.steps_per_s:,.0f} steps/s · ")
                  + f"{snap.device} · {clip}{_share(snap)} · lr {snap.lr:g}",
        "metrics": [["Loss", fmt(rec.loss if rec else None)],
                    ["‖g‖ before clip", fmt(rec.grad_norm_pre_clip if rec else None)],
                    ["‖g‖ after clip", fmt(rec.grad_norm_post_clip if rec else None)],
                    [accuracy_label(snap.config), "–" if acc is None else f"{acc:.0%}"]],
    }


def _share(snap: RunSnapshot) -> str:
    """' (clipped on 12.5% of steps)' over every step so far, whatever the clip mode then; '' when not counted."""
    if snap.clipped_steps is None or snap.step == 0:
        return ""
    return f" ({clipped_words(clipped_share(snap.clipped_steps, snap.step))})"


def status_of(runner: Runner) -> dict:
    """The whole status of a runner (every run of the tab), stamped so the page keeps the newest copy."""
    return _status(runner)[0]


def settle(runner: Runner) -> None:
    """If every run of ``runner`` has ended, wait (at most ENDING_S) for its thread to end too."""
    if runner.alive and not any(run.status in LIVE for run in runner.runs):
        runner.wait(ENDING_S)


def _status(runner: Runner) -> tuple[dict, list[RunSnapshot]]:
    settle(runner)
    t = time.monotonic()  # before the snapshots: a copy is never stamped newer than what it holds
    snaps = [runner.snapshot(i, history=False) for i in range(len(runner.runs))]
    multi = len(snaps) > 1
    return {"t": t, "alive": runner.alive,
            "runs": [run_status(s, s.label if multi else None, run_color(i) if multi else None)
                     for i, s in enumerate(snaps)]}, snaps


def status_line(runner: Runner) -> list[RunSnapshot]:
    """Draw the status line of ``runner``; it polls the live route by itself while the runner is alive, and
    when it sees a run change state (explode, finish, stop) it triggers a rerun of the page, which draws the
    banners and the buttons. Returns the snapshots it drew (without history), for the banners."""
    status, snaps = _status(runner)
    _element(key="status_line", data={"status": status, "url": base_path() + API_PREFIX + runner.id,
                                      "every_ms": int(POLL_S * 1000)}, on_changed_change=_changed)
    return snaps


def _changed() -> None:
    """Nothing to do here: the rerun this trigger causes is the point."""
