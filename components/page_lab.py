"""The live lab page: controls in the sidebar, then the live view (auto-refreshing fragments reading runner
snapshots), then the runs of this session. Training runs on background threads owned by the RunManager.
"""

import streamlit as st

from . import controls, live, live_api, plot
from . import session as S
from .panels import plain

# Refresh periods while a run is alive. The status line polls its own numbers four times a second and triggers
# a rerun when a run changes state (components/live_status.py). Charts go slower: each refresh builds a figure
# on a server whose training thread shares the GIL and, on a small machine, the cores with the browser
# (measured in docs/benchmarks.md).
STATUS_REFRESH_S = 1.0  # status fragment, only without the live route: banners, end of run, the status line
CHARTS_REFRESH_S = 3.0  # loss and gradient norm
DETAIL_REFRESH_S = 6.0  # the four per-layer charts and the theory panel


def render() -> None:
    S.init()  # guarded: only the first run of a session reads the URL
    S.start_requested()  # after every callback of this request, before anything is drawn
    S.remember_drawn()

    with st.sidebar:
        cfg = controls.sidebar()

    st.title("Gradient Explosion Lab")
    st.caption("Turn gradient clipping, the activation and the initialization on and off, and watch a real PyTorch "
               "run explode into inf/NaN, or not. Clipping and learning rate apply to the running training at once.")
    for warning in st.session_state.url_warnings:
        st.warning(plain(warning), icon=":material/link_off:")
    if S.store_error():
        st.warning(plain(S.store_error()), icon=":material/database:")

    runner = S.current_runner()
    polling = runner is not None and runner.alive
    # Where serve.py serves the live routes, the status line and the charts refresh themselves from them while
    # the run trains, and no fragment reruns on a timer; under a bare `streamlit run app.py` the fragments do.
    status_timer = polling and not live_api.SERVED
    chart_timer = polling and not live.charts_fetch_themselves()
    st.fragment(run_every=STATUS_REFRESH_S if status_timer else None)(live.live_view)(polling)
    st.fragment(run_every=CHARTS_REFRESH_S if chart_timer else None)(live.overlay_view)(CHARTS_REFRESH_S)
    st.fragment(run_every=DETAIL_REFRESH_S if chart_timer else None)(live.detail_view)(DETAIL_REFRESH_S)
    live.runs_section()
    plot.preload()
    S.sync_url(cfg)
