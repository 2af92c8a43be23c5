"""The server: the Streamlit app (``app.py``) plus the JSON routes its live view polls, behind a Host check.
This is how the app is served: ``make run``, the Dockerfile, the tests and the benchmarks all run this file.

``make run`` starts it with ``streamlit run serve.py``, which finds the ``st.App`` below and serves it with the
settings in ``.streamlit/config.toml``. Every request, Streamlit's own and the routes', passes ``HostGuard``
first (components/host_guard.py: a page on another site that re-points its name at this machine is refused).
What the first Start would otherwise wait for (imports, the digits set) is warmed up on a background thread as
the server starts. A bare ``streamlit run app.py`` has none of these: its page draws the numbers of each rerun
(a button, a setting), but its status line, charts and running stability map do not move on their own.
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
