"""The live views (the status line and banners, the overlay charts, the per-layer charts) and the runs section
under them. While a run trains, the status line and the charts keep themselves current from the live routes
(components/live.js); the page reruns when a button or a setting changes, or when the status line sees a run
change state.

They only read: runner snapshots (copies taken under the run's lock) and session state. The training thread
never touches Streamlit.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from training.config import env_number
from training.run import RunSnapshot
from training.runner import Runner

from . import live_api, live_status, panels, theory_panel
from . import live_figures as LF
from . import session as S
from .data import describe, table_csv, table_parquet
from .plot import Source

ss = st.session_state
# How often the charts that follow the steps ask for new rows, while on screen. Each answer is a redraw in the
# browser: at 0.25 s six charts take ~0.9 of a core, at 1 s ~0.4 (docs/benchmarks.md, P7), which a browser sharing
# two cores with the trainer takes from it (P2 0.86 at 0.25 s, 0.93 at 1 s). The page's "Chart refresh" control
# picks another (0.25 s: each chart within ~0.5 s of the trainer); GEL_CHART_REFRESH_S sets the server's default.
STREAM_S = env_number("GEL_CHART_REFRESH_S", 1.0, 0.25, 10.0, float)
REFRESH_CHOICES = tuple(sorted({0.25, 0.5, 1.0, 3.0, STREAM_S}))


def refresh_s() -> float:
    """The period this tab's charts poll at: its control, or the server's default."""
    return ss.get("w_chart_refresh", STREAM_S)


def refresh_control() -> None:
    ss.setdefault("w_chart_refresh", STREAM_S)
    st.select_slider("Chart refresh", REFRESH_CHOICES, key="w_chart_refresh", format_func=lambda v: f"{v:g} s",
                     help="How often the live charts draw the new steps: 0.25 s keeps each within ~0.5 s of the "
                          "trainer. Each redraw costs the browser CPU, about 0.9 of a core at 0.25 s and 0.4 at 1 s, "
                          "which on a small machine that also trains it takes from training.")
HOW_TO = ("**Try this first:** pick the preset *a step too large* and press **Start**: the loss starts healthy, "
          "then climbs for ~45 steps, in slow motion, until training dies. Every preset is a lesson: press **Fix** "
          "under the picker (one setting changes) and Start again, or **Both, A/B** to train the problem and the "
          "fix side by side on identical batches.")


def _overlay_snapshots(exclude: set[str]) -> list[RunSnapshot]:
    """Earlier runs picked in the overlay list, relabelled with their run id so legends stay unambiguous."""
    picked = set(ss.get("w_overlay", []))
    return [LF.as_overlay(runner.snapshot(i)) for runner in S.session_runners()
            for i, run in enumerate(runner.runs) if run.id in picked and run.id not in exclude]


def _sources(runner: Runner, runs: list[RunSnapshot], extra: list[RunSnapshot],
             every_s: float) -> Callable[[str], Source] | None:
    """Chart key -> where the chart asks for what is new while the run trains (the live chart route), with the
    cursor of the figure drawn from ``runs`` and ``extra`` (overlaid); None once the runner has ended. The charts
    that follow the steps poll every ``refresh_s()``, all in one request, the theory charts every ``every_s``."""
    if not runner.alive:
        return None

    def source(key: str) -> Source:
        snaps = runs + extra if key in LF.OVERLAY_KEYS else runs[:1]
        streams = key in LF.STREAM_KEYS + LF.NOW_KEYS  # asked for together, one request a period
        return Source(live_api.chart_url(key, [s.id for s in runs], [s.id for s in extra]),
                      refresh_s() if streams else every_s, LF.cursor(key, snaps),
                      live_api.charts_url() if streams else None)

    return source


def live_view(drawn_alive: bool) -> None:
    """Status line and banners of this tab's run. The status line keeps itself current, and reruns the page when
    a run changes state. A run that ends while this rerun draws (the buttons above were drawn from
    ``drawn_alive``) reruns the page at once, so its buttons and URL follow."""
    runner = S.current_runner()
    if runner is None:
        st.info(HOW_TO, icon=":material/lightbulb:")
        return
    S.watch(runner)
    with st.container(key="status"):
        snaps = live_status.status_line(runner)
    with st.container(key="banner"):
        for snap in snaps:
            panels.outcome_banner(snap, who=f"Run {snap.label}" if len(snaps) > 1 else "Training")
    if drawn_alive and not runner.alive:
        st.rerun()


def overlay_view() -> None:
    """Loss and gradient norm of every run of this tab, with the earlier runs picked for overlay; while the run
    trains the two charts append its new rows every ``refresh_s()`` seconds."""
    runner = S.current_runner()
    if runner is None:
        return
    snaps = [runner.snapshot(i) for i in range(len(runner.runs))]
    extra = _overlay_snapshots({s.id for s in snaps})
    source = _sources(runner, snaps, extra, refresh_s())
    with st.container(key="charts"):
        panels.overlay_charts(snaps + extra, source)


def detail_view(every_s: float) -> None:
    """Per-layer charts of one run (pick A or B when comparing), and the theory panel. A fragment of its own, so
    picking A or B reruns only this; the per-layer charts follow the steps as the overlay does, the theory charts
    are redrawn whole every ``every_s`` seconds (each whole figure costs the training thread time)."""
    runner = S.current_runner()
    if runner is None:
        return
    snaps = [runner.snapshot(i) for i in range(len(runner.runs))]
    detail = snaps[0]
    if len(snaps) > 1:
        pick = st.radio("Per-layer charts below are for run", [s.label for s in snaps], horizontal=True,
                        key="w_inspect")
        detail = next(s for s in snaps if s.label == pick)
    source = _sources(runner, [detail], [], every_s)
    with st.container(key="detail"):
        panels.detail_charts(detail, source)
        theory_panel.theory_panel(detail, source)


def runs_section() -> None:
    """Runs of this session (any can be overlaid on the live one) and downloads of the current run."""
    runners = S.session_runners()
    current = S.current_runner()
    if not runners:
        return
    st.subheader("Runs of this session", divider="gray")
    current_ids = {r.id for r in current.runs} if current else set()
    runs = [(runner, i) for runner in runners for i in range(len(runner.runs))]
    snaps = {runner.runs[i].id: runner.snapshot(i) for runner, i in runs}
    others = [rid for rid in snaps if rid not in current_ids]
    if others:
        st.multiselect("Overlay earlier runs on the loss and gradient-norm charts", others, key="w_overlay",
                       max_selections=live_api.MAX_EXTRA,
                       format_func=lambda rid: f"{LF.short(rid)} {snaps[rid].label} · {snaps[rid].status} at "
                                               f"{snaps[rid].step} · {describe(snaps[rid].config)}")
    panels.runs_table(list(snaps.values()), current_ids)
    # The current run's downloads; after Reset, the run just cleared keeps them (it is still on the server).
    shown = current if current is not None else runners[-1]
    multi = len(shown.runs) > 1
    panels.downloads([(f"run {run.label}" if multi else "", snaps[run.id], lambda i=i: shown.snapshot(i))
                      for i, run in enumerate(shown.runs)], table_csv, table_parquet)
