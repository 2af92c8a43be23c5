"""The live lab page: controls in the sidebar, then the live view (a status line and charts that keep themselves
current from the live routes, see components/live.js), then the runs of this session. Training runs on
background threads owned by the RunManager.
"""

import streamlit as st

from . import controls, live, live_status, plot
from . import session as S
from .panels import plain

# How often the charts fetch their figure while a run is alive. The status line polls its own numbers four times
# a second (components/live_status.py); charts go slower: each refresh builds a figure on a server whose training
# thread shares the GIL and, on a small machine, the cores with the browser (measured in docs/benchmarks.md).
DETAIL_REFRESH_S = 6.0  # the theory panel; the charts that follow the steps ask for new rows every live.STREAM_S


def render() -> None:
    S.init()  # guarded: only the first run of a session reads the URL
    S.start_requested()  # after every callback of this request, before anything is drawn
    S.remember_drawn()
    runner = S.current_runner()
    if runner is not None:
        live_status.settle(runner)  # an ended run's buttons are drawn ended, in this rerun
    drawn_alive = runner is not None and runner.alive  # what the buttons below are drawn from

    with st.sidebar:
        cfg = controls.sidebar()

    st.title("Gradient Explosion Lab")
    st.caption("Turn gradient clipping, the activation and the initialization on and off, and watch a real PyTorch "
               "run explode into inf/NaN, or not. Clipping and learning rate apply to the running training at once.")
    for warning in st.session_state.url_warnings:
        st.warning(plain(warning), icon=":material/link_off:")
    if S.store_error():
        st.warning(plain(S.store_error()), icon=":material/database:")

    live.live_view(drawn_alive)
    live.overlay_view()
    st.fragment(live.detail_view)(DETAIL_REFRESH_S)  # picking run A or B reruns only this
    live.runs_section()
    plot.preload()
    S.sync_url(cfg)
