"""The server: the Streamlit app (``app.py``) plus the JSON routes its live view polls, behind a Host check.

``make run`` starts it with ``streamlit run serve.py``, which finds the ``st.App`` below and serves it with the
settings in ``.streamlit/config.toml``. Every request, Streamlit's own and the routes', passes ``HostGuard``
first (components/host_guard.py: a page on another site that re-points its name at this machine is refused).
What the first Start would otherwise wait for (imports, the digits set) is warmed up on a background thread as
the server starts. ``streamlit run app.py`` also works, without the routes, the guard or the warm-up: the status
line then moves once a second, with its fragment.
"""

import threading

import streamlit as st
from starlette.middleware import Middleware
from streamlit import config

from components.host_guard import HostGuard
from components.live_api import routes, warm_up
from components.page_base import PageBase

app = st.App("app.py", routes=routes(),
             middleware=[Middleware(HostGuard, bound=config.get_option("server.address")),
                         Middleware(PageBase, base_path=config.get_option("server.baseUrlPath"))])
threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
