"""The dashboard in a real Chromium against a real `streamlit run`: explode, clip, compare, stop.

Elements are found by their widget key (Streamlit adds the class ``st-key-<key>``); stale copies that linger
during a fragment rerun carry ``data-stale="true"`` and are skipped. With UPDATE_SCREENSHOT=1 the test also
saves docs/screenshot.png.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.apptest_helpers import wait_until

pytestmark = pytest.mark.browser
SCREENSHOT_SIZE = {"width": 1400, "height": 1900}
MAX_SCREENSHOT_BYTES = 1_000_000
CHARTS = ("chart_loss", "chart_grad", "chart_heatmap", "chart_flow", "chart_weights", "chart_acts")


def el(page, key: str):
    return page.locator(f".st-key-{key}:not([data-stale='true'])").first


def click_button(page, key: str) -> None:
    el(page, key).locator("button:visible").first.click()


def text(page, key: str) -> str:
    """Text of the element, or "" when it is not on the page (an empty container is not rendered)."""
    loc = el(page, key)
    return loc.inner_text() if loc.count() else ""


def status(page) -> str:
    return text(page, "status")


def steps(page) -> list[int]:
    """The step count of each run in the status area ("step 1,234 / 2,000")."""
    return [int(s.replace(",", "")) for s in re.findall(r"step ([\d,]+) /", status(page))]


def address(page) -> str:
    """The address bar now (the app rewrites it in place, which page.url may not have seen yet)."""
    return page.evaluate("window.location.href")


def set_number(page, key: str, value: str, url_has: str) -> None:
    """Type into a number input and press Enter until the app has it (the URL carries the config). An Enter
    that lands while the previous rerun is still drawing can be dropped by the page, so it is retried."""
    for _ in range(5):
        box = el(page, key).locator("input")
        box.fill(value)
        box.press("Enter")
        try:
            wait_until(lambda: url_has in address(page), timeout=3.0, what=f"{url_has} in the URL")
            return
        except AssertionError:
            continue
    raise AssertionError(f"{key} never took {value}")


# The chart's own plot div (components/plot.py), reached from the element Streamlit keys by our chart key.
PLOT = "document.querySelector('.st-key-{key}:not([data-stale=\"true\"]) .gel-plot')"


def speed_to_max(page) -> None:
    """Put the speed control at "max" (a lesson may play in slow motion; these tests want full speed). The key
    press is repeated until it shows: a rerun that redraws the slider just then swallows a press."""
    def at_max() -> bool:
        slider = el(page, "w_speed").get_by_role("slider")
        if slider.get_attribute("aria-valuetext") == "max":
            return True
        slider.press("End")
        return False

    wait_until(at_max, what="the speed control at max", every=0.3)


def plot_eval(page, key: str, body: str):
    """Evaluate ``body`` with ``d`` bound to the chart's plot div (null when it is not on the page)."""
    return page.evaluate(f"(() => {{ const d = {PLOT.format(key=key)}; return {body}; }})()")


def drawn(page, key: str) -> int:
    return int(plot_eval(page, key, "d && d.dataset.drawn ? Number(d.dataset.drawn) : 0"))


def last_step_drawn(page, key: str, trace: str = "loss") -> float:
    """The largest x of the chart's trace named ``trace``, as plotly.js decoded it for drawing."""
    xs = f"Array.from((d._fullData.find(t => t.name === '{trace}') || {{x: []}}).x)"
    return float(plot_eval(page, key, f"d && d._fullData ? Math.max(...{xs}.filter(Number.isFinite)) : -1"))


def title_step(page, key: str) -> int:
    """The step a chart's title names ("... (step 877)"), or -1 (not drawn yet, or still waiting for data)."""
    title = plot_eval(page, key, "d && d.layout && d.layout.title ? d.layout.title.text : ''") or ""
    m = re.search(r"step (\d+)", title)
    return int(m[1]) if m else -1


SETTLED = """() => ![...document.querySelectorAll('[data-testid="stMain"] [data-stale="true"]')]
    .some(e => e.offsetHeight > 0)"""  # no visible element is waiting for its refresh (drawn faded)


def all_drawn(page) -> bool:
    return all(el(page, key).locator(".main-svg").count() > 0 for key in CHARTS) and page.evaluate(SETTLED)


def screenshot_when_drawn(page, path) -> None:
    """Elements fade while their fragment reruns: keep a picture taken between two checks that every chart was
    drawn and everything settled."""
    def taken_while_drawn() -> bool:
        if not all_drawn(page):
            return False
        page.screenshot(path=str(path))
        return all_drawn(page)

    # A check and a picture take ~0.1-0.3 s each on a busy machine: room for some 40 tries, 0.1 s apart
    wait_until(taken_while_drawn, timeout=15.0, what="a picture with every chart drawn and settled", every=0.1)


def test_explode_clip_compare_and_stop(streamlit_server, browser_page, repo_root, tmp_path):
    page = browser_page
    page.set_viewport_size(SCREENSHOT_SIZE)  # tall enough for every chart: drawn once, not re-laid out later
    page.goto(streamlit_server)
    el(page, "btn_start").wait_for(timeout=60_000)

    # Pick the preset, make the runs long enough to watch, Start: it explodes within a few steps.
    el(page, "w_preset").get_by_role("combobox").click()
    page.get_by_role("option", name="watch it explode").click()
    # The preset's rerun sets Steps to 300; type only after that, or the rerun would overwrite the typing.
    wait_until(lambda: el(page, "w_steps").locator("input").input_value() == "300", what="the preset's values")
    set_number(page, "w_steps", "20000", url_has="steps=20000")
    # The lesson plays in slow motion (2 steps a second); this test wants its runs at full speed.
    speed_to_max(page)
    click_button(page, "btn_start")
    wait_until(lambda: "exploded at step" in text(page, "banner"), what="the explosion banner")
    assert steps(page)[0] > 0
    # Every parameter goes non-finite on the same step; backward reaches the output layer first.
    assert re.search(r"first non-finite gradient in head\.(weight|bias)", text(page, "banner"))

    # Toggle clipping on and Start again: the run survives and the charts grow.
    el(page, "w_clip").get_by_text("by norm").click()
    wait_until(lambda: not el(page, "w_clip_threshold").locator("input").is_disabled(), what="threshold enabled")
    click_button(page, "btn_start")
    wait_until(lambda: "clip ‖g‖ ≤ 1" in status(page) and steps(page)[0] > 5, what="the clipped run to train")
    first = steps(page)[0]
    wait_until(lambda: steps(page)[0] > first + 10, what="the step count to rise")
    assert "exploded" not in text(page, "banner")
    click_button(page, "btn_stop")
    wait_until(lambda: "stopped" in status(page), what="the run to stop")

    # Compare A/B: B is A with clipping toggled (off), so A survives while B explodes, side by side.
    el(page, "w_compare").locator("label").click()
    el(page, "b_clip").wait_for(timeout=20_000)
    click_button(page, "btn_start")
    wait_until(lambda: len(steps(page)) == 2 and "Run B exploded" in text(page, "banner")
               and steps(page)[0] > 100, timeout=45, what="A to train and B to explode")
    # The charts' first refresh after Start: the picture shows them with the runs' steps, not just step 0.
    wait_until(lambda: last_step_drawn(page, "chart_loss", "A loss") > 50, what="the charts' first refresh")
    wait_until(lambda: title_step(page, "chart_flow") > 50, what="the per-layer charts' first refresh")
    page.mouse.move(700, 40)  # over the blank header, and nothing focused: no tooltip in the picture
    page.evaluate("document.activeElement && document.activeElement.blur()")
    # The README's picture is refreshed on request only, so a test run leaves the tracked file alone.
    shot = repo_root / "docs" / "screenshot.png" if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "shot.png"
    screenshot_when_drawn(page, shot)
    assert 0 < shot.stat().st_size < MAX_SCREENSHOT_BYTES
    click_button(page, "btn_stop")
    wait_until(lambda: "stopped" in status(page), what="the compare run to stop")


def open_lesson(page, server: str, name: str) -> None:
    """The lab with lesson ``name`` picked from the preset list, its panel showing its claim."""
    from training import registry as R

    page.goto(server)
    el(page, "btn_start").wait_for(timeout=60_000)
    el(page, "w_preset").get_by_role("combobox").click()
    page.get_by_role("option", name=name).click()
    el(page, "lesson").wait_for(timeout=20_000)
    assert R.PRESETS[name].claim[:40] in el(page, "lesson").inner_text()
