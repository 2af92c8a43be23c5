"""A refresh and a second browser reattach to the same live run through ``?run=<id>``; its steps keep counting.

The server's run store is a temp folder of this module's own (conftest's ``streamlit_server``).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from conftest import VIEWPORT, end_runs
from test_browser import address, click_button, el, set_number, status, steps, wait_until

pytestmark = pytest.mark.browser


def run_id(url: str) -> str | None:
    return parse_qs(urlparse(url).query).get("run", [None])[0]


def wait_steps_above(page, floor: int, what: str) -> int:
    """Wait until the status shows a step count above ``floor``; return it."""
    wait_until(lambda: bool(steps(page)) and steps(page)[0] > floor, timeout=20, what=what)
    return steps(page)[0]


def test_a_refresh_and_a_second_browser_reattach_to_the_live_run(streamlit_server, browser_page, browser):
    page = browser_page
    page.goto(streamlit_server)
    el(page, "btn_start").wait_for(timeout=60_000)
    el(page, "w_preset").get_by_role("combobox").click()
    page.get_by_role("option", name="fix the init").click()
    wait_until(lambda: el(page, "w_steps").locator("input").input_value() == "300", what="the preset's values")
    set_number(page, "w_steps", "100000", url_has="steps=100000")
    click_button(page, "btn_start")
    wait_until(lambda: run_id(address(page)) is not None, what="the run id in the URL")
    before = wait_steps_above(page, 20, "the run to train")
    url, rid = address(page), run_id(address(page))

    # Reload: the same run, its step count carried on rather than restarted.
    page.reload()
    after = wait_steps_above(page, before, "the reloaded page to show the run still counting")
    assert run_id(address(page)) == rid
    assert "running" in status(page)
    assert after > before

    # A second browser (its own cookies and session) opening the shared link sees the same live run.
    other = browser.new_context(viewport=VIEWPORT)
    try:
        second = other.new_page()
        second.goto(url)
        el(second, "btn_stop").wait_for(timeout=30_000)
        shared = wait_steps_above(second, after, "the second browser to show the same run")
        assert run_id(address(second)) == rid and shared > after
        click_button(second, "btn_stop")
        wait_until(lambda: "stopped" in status(second), what="the run to stop")
    finally:
        end_runs(other)
        other.close()
    # The first tab sees it stop too: it is one run.
    wait_until(lambda: "stopped" in status(page), what="the first tab to see the stop")

    # The stopped run is on the Saved runs page, with a link back to the lab carrying its settings.
    page.goto(f"{streamlit_server}/saved-runs")
    el(page, "saved_details").wait_for(timeout=30_000)
    assert rid in el(page, "saved_details").inner_text()
    assert "steps=100000" in page.get_by_role("link", name="Open in the lab").get_attribute("href")
    el(page, "saved_chart_loss").locator(".main-svg").first.wait_for(timeout=20_000)
    assert page.locator("[data-testid='stException']").count() == 0
