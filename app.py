"""Gradient Explosion Lab: flip mitigations, watch PyTorch training explode (or not), live.

The entry file only routes: each page lives in components/ as a ``render()`` function. The app is served by
``serve.py`` (``streamlit run serve.py``, as ``make run`` does), which adds the routes the live view polls; a bare
``streamlit run app.py`` draws the same pages, but its live view moves only when the page reruns.
"""

import streamlit as st
import torch

from components import page_lab, page_map, page_saved
from components import session as S


def main() -> None:
    # One intra-op thread: with torch's default on a 2-core machine the trainer fell to 31-49 steps/s and the page
    # lagged; with 1 it trains at ~150-260 steps/s and leaves a core for the server.
    torch.set_num_threads(1)
    st.set_page_config(page_title="Gradient Explosion Lab", page_icon="💥", layout="wide",
                       initial_sidebar_state=340)
    pages = [
        st.Page(page_lab.render, title="Live lab", icon=":material/monitoring:", default=True),
        st.Page(page_saved.render, title="Saved runs", icon=":material/history:", url_path="saved-runs"),
        st.Page(page_map.render, title="Stability map", icon=":material/grid_on:", url_path="stability-map"),
    ]
    S.keep_controls()  # before any page draws its widgets
    S.settle()  # a request without callbacks may echo stale controls too
    st.navigation(pages).run()


# Streamlit runs this file as __main__. A stability map's spawned workers import the parent's __main__ again, as
# __mp_main__: they must not draw the app (each would log "missing ScriptRunContext" for every st call).
if __name__ == "__main__":
    main()
