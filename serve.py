"""The server: the Streamlit app (``app.py``) plus the JSON route its live status line polls.

``make run`` starts it with ``streamlit run serve.py``, which finds the ``st.App`` below and serves it with the
settings in ``.streamlit/config.toml``. ``streamlit run app.py`` also works, without the route: the status line
then moves once a second, with its fragment.
"""

import streamlit as st

from components.live_api import routes

app = st.App("app.py", routes=routes())
