"""The server: the Streamlit app (``app.py``) plus the JSON routes its live view polls, behind a Host check.

``make run`` starts it with ``streamlit run serve.py``, which finds the ``st.App`` below and serves it with the
settings in ``.streamlit/config.toml``. Every request, Streamlit's own and the routes', passes ``HostGuard``
first (components/host_guard.py: a page on another site that re-points its name at this machine is refused).
``streamlit run app.py`` also works, without the routes and without the guard: the status line then moves once
a second, with its fragment.
"""

import streamlit as st
from starlette.middleware import Middleware
from streamlit import config

from components.host_guard import HostGuard
from components.live_api import routes

app = st.App("app.py", routes=routes(),
             middleware=[Middleware(HostGuard, bound=config.get_option("server.address"))])
