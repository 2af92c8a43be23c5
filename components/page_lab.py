"""The live lab page: controls in the sidebar, then the live view (auto-refreshing fragments reading runner
snapshots), then the runs of this session. Training runs on background threads owned by the RunManager.
"""

import streamlit as st

from . import controls, live, plot
from . import session as S

# Refresh periods while a run is alive. A step waits up to one status period to show, so that one is short (its
# rerun reads no history). Charts go slower: Streamlit remounts a Plotly chart whose figure changed, and each
# remount is a full redraw costing the browser ~0.1 s of a core that the training thread shares on a small machine
# (measured in docs/benchmarks.md).
STATUS_REFRESH_S = 0.3  # status line and banners
CHARTS_REFRESH_S = 2.0  # loss and gradient norm
DETAIL_REFRESH_S = 4.0  # the four per-layer charts and the theory panel


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
    plot.preload()
    S.sync_url(cfg)
