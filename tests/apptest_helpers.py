"""Helpers shared by the test suites: one wait for any condition, and what the AppTest suites read off the page."""

import json
import re
import time
from pathlib import Path

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def shown(markdown: str) -> str:
    """The text a message shows: its Markdown escapes and the zero-width spaces that keep addresses unlinked
    removed (components/panels.plain)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u200b", "")


def wait_until(predicate, timeout: float = 30.0, what: str = "the condition", every: float = 0.05) -> None:
    """Call ``predicate`` every ``every`` seconds until it is true; fail naming ``what`` after ``timeout`` seconds
    (its last call ends at the deadline or after it, so a slow predicate is never cut short unchecked)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def poll(at, condition, timeout=30.0, what: str = "the page's condition"):
    """Rerun the app until ``condition(at)`` holds: AppTest never fires ``run_every``, so tests drive refreshes."""

    def rerun_and_check() -> bool:
        at.run()
        assert not at.exception, at.exception
        return condition(at)

    wait_until(rerun_and_check, timeout, what, every=0.2)


def config_in_url(at):
    """The config the controls describe, as the URL carries it."""
    from training.config import from_query

    cfg, errors = from_query({k: v for k, v in at.query_params.items() if k != "run"})
    assert not errors
    return cfg


def runner_of(at):
    """The runner the tab's ``run_id`` names, from the process-wide manager."""
    from training.manager import get_manager

    return get_manager().get(at.session_state["run_id"])


def live_figures(at) -> dict[str, dict]:
    """The live charts on the page, by key, as figure dicts: the ``gel_plot`` elements (components/plot.py), each
    carrying its Plotly figure as JSON. Charts drawn with ``st.plotly_chart`` (the map, saved runs) are not here."""
    figures = {}
    for el in at.get("bidi_component"):
        data = json.loads(el.proto.json) if el.proto.component_name == "gel_plot" else {}
        if "figure" in data:  # not the element that only preloads plotly.js
            figures[el.proto.id.rsplit("-", 1)[-1]] = json.loads(data["figure"])
    return figures


def values(array) -> list:
    """A figure JSON's array as a list: plain, or plotly's typed-array form {"dtype", "bdata"}."""
    if isinstance(array, dict):
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def live_status(at) -> dict | None:
    """What the status line element was given at the last rerun (components/live_status.py), or None."""
    for el in at.get("bidi_component"):
        if el.proto.component_name == "gel_status":
            return json.loads(el.proto.json)
    return None
