"""The live lab page: controls in the sidebar, then the live view (auto-refreshing fragments reading runner
snapshots), then the runs of this session. Training runs on background threads owned by the RunManager.
"""

import streamlit as st

from . import controls, live
from . import session as S

# Refresh periods while a run is alive. Each chart refresh is a full redraw (Streamlit remounts a Plotly chart
# whose figure changed) and its figure is built on the server, beside the training thread: charts go slower.
STATUS_REFRESH_S = 0.5  # status line and banners
CHARTS_REFRESH_S = 1.5  # loss and gradient norm
DETAIL_REFRESH_S = 3.0  # the four per-layer charts


def render() -> None:
    S.init()  # guarded: only the first run of a session reads the URL

    with st.sidebar:
        cfg = controls.sidebar()

    st.title("Gradient Explosion Lab")
    st.caption("Turn gradient clipping, the activation and the initialization on and off, and watch a real PyTorch "
               "run explode into inf/NaN, or not. Clipping and learning rate apply to the running training at once.")
    for warning in st.session_state.url_warnings:
        st.warning(warning, icon=":material/link_off:")
    if S.store_error():
        st.warning(S.store_error(), icon=":material/database:")

    runner = S.current_runner()
    polling = runner is not None and runner.alive
    st.fragment(run_every=STATUS_REFRESH_S if polling else None)(live.live_view)(polling)
    st.fragment(run_every=CHARTS_REFRESH_S if polling else None)(live.overlay_view)()
    st.fragment(run_every=DETAIL_REFRESH_S if polling else None)(live.detail_view)()
    live.runs_section()
    S.sync_url(cfg)
