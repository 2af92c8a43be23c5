"""The page in a real Chromium: what it shows and what it must not (links, images or requests from a URL's values),
in dark mode, on a phone, and the console kept clean."""

from __future__ import annotations

from urllib.parse import quote, urlparse

import pytest

pytestmark = pytest.mark.browser
IMAGE = "![c](http://evil.example/pixel.png)"
LINK = "[Your session expired, click to log in](http://evil.example/phish)"


def test_url_values_never_become_images_or_links(streamlit_server, browser_page):
    page = browser_page
    asked = []
    page.on("request", lambda r: asked.append(r.url) if urlparse(r.url).hostname == "evil.example" else None)
    for query in (f"activation={quote(IMAGE)}", f"run={quote(IMAGE)}", f"b_init={quote(IMAGE)}&compare=1",
                  f"run={quote(LINK)}", "run=r" + "x" * 60_000):
        page.goto(f"{streamlit_server}/?{query}")
        alert = page.locator("[data-testid='stMain'] [data-testid='stAlertContentWarning']").first
        alert.wait_for(timeout=30_000)
        shown = alert.inner_text()
        assert "evil.example" in shown or "xxxx" in shown  # the value is there, as text
        assert len(shown) < 300
        assert page.locator("[data-testid='stMain'] a[href*='evil'], [data-testid='stMain'] img[src*='evil']"
                            ).count() == 0
    assert asked == []
