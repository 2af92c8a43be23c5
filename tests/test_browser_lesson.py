"""A lesson played in a real Chromium at its own speed: the climb is drawn as it happens, before the explosion.

"a step too large" starts healthy and climbs for ~45 steps before going non-finite; at its default speed (4 steps a
second) that takes ~11 s, so the loss chart, refreshed every 3 s while the run trains, draws finite steps of the
climb before the ✕ non-finite marker appears.
"""

from __future__ import annotations

import pytest
from test_browser import click_button, el, open_lesson, plot_eval, wait_until

from components.charts import NON_FINITE_NAME
from training import registry as R

pytestmark = pytest.mark.browser
LESSON = "a step too large"

# What the loss chart draws now: the finite steps of its loss line, and whether the ✕ marker is on it.
DRAWN = f"""d && d._fullData ? {{
    finite: (() => {{ const t = d._fullData.find(t => t.name === 'loss');
                      return t ? Array.from(t.y).filter(Number.isFinite).length : 0; }})(),
    marker: d._fullData.some(t => t.name === '{NON_FINITE_NAME}' && t.x && t.x.length > 0)
}} : {{finite: 0, marker: false}}"""


def test_an_explode_lesson_at_its_default_speed_draws_its_climb_before_the_explosion(streamlit_server, browser_page):
    page = browser_page
    open_lesson(page, streamlit_server, LESSON)
    speed = f"{R.PRESETS[LESSON].speed:g}"
    wait_until(lambda: el(page, "w_speed").get_by_role("slider").get_attribute("aria-valuetext") == speed,
               what="the lesson's speed on the speed control")
    click_button(page, "btn_start")

    # Watch the loss chart until the ✕ appears; remember the most finite steps it drew before that.
    before = 0

    def marked() -> bool:
        nonlocal before
        drawn = plot_eval(page, "chart_loss", DRAWN) or {"finite": 0, "marker": False}
        if not drawn["marker"]:
            before = max(before, drawn["finite"])
        return drawn["marker"]

    wait_until(marked, 90, "the explosion marker on the loss chart", every=0.1)
    assert before >= 10, f"only {before} finite steps were drawn before the explosion marker"
    wait_until(lambda: "exploded at step" in el(page, "banner").inner_text(), what="the explosion banner")
