"""Leaving the lab for another page and coming back keeps its settings (Streamlit forgets undrawn widgets)."""

import pytest

pytestmark = pytest.mark.browser


def _no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator(
        "[data-testid='stException']").first.inner_text()


def test_visiting_other_pages_keeps_the_lab_settings(streamlit_server, browser_page):
    page = browser_page
    page.goto(f"{streamlit_server}/?activation=tanh&lr=0.002&init=xavier_normal")
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("Activation").first.wait_for(timeout=30_000)
    for title in ("Saved runs", "Stability map"):
        page.locator("[data-testid='stSidebarNav']").get_by_text(title).click()
        page.get_by_role("heading", name=title).first.wait_for(timeout=30_000)
        _no_exception(page)
        page.locator("[data-testid='stSidebarNav']").get_by_text("Live lab").click()
        page.locator(".st-key-w_activation input[role='combobox']").first.wait_for(timeout=30_000)
        page.wait_for_function("() => location.search.includes('activation=tanh')", timeout=30_000)
        _no_exception(page)
        # A selectbox shows its value in a combobox input.
        assert page.locator(".st-key-w_activation input[role='combobox']").first.input_value() == "tanh"
        assert page.locator(".st-key-w_init input[role='combobox']").first.input_value() == "xavier_normal"
    assert "lr=0.002" in page.evaluate("location.search")
