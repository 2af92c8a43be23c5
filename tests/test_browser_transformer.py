"""The attention-logit lesson in a real Chromium: the largest-logit chart is drawn while the run trains and shows
the logits grow (Wortsman et al. 2023: ~2 at step 0 to ~10⁴ without qk-layernorm)."""

from __future__ import annotations

import pytest
from test_browser import click_button, drawn, el, open_lesson, plot_eval, speed_to_max, wait_until

pytestmark = pytest.mark.browser
LESSON = "attention logits grow"
KEY = "chart_attn_logit"

# What the chart draws now: its last step, the layers' value at step 0 and their largest value so far.
DRAWN = """d && d._fullData ? (() => {
    const layers = d._fullData.filter(t => t.name && t.name.startsWith('layer '));
    const xs = layers.flatMap(t => Array.from(t.x)), ys = layers.flatMap(t => Array.from(t.y).filter(Number.isFinite));
    const first = layers.map(t => Array.from(t.y)[0]).filter(Number.isFinite);
    return {last: xs.length ? Math.max(...xs) : -1, first: first.length ? Math.max(...first) : null,
            peak: ys.length ? Math.max(...ys) : null};
})() : null"""


def test_the_attention_logit_lesson_draws_its_logits_growing_while_it_trains(streamlit_server, browser_page):
    page = browser_page
    open_lesson(page, streamlit_server, LESSON)
    speed_to_max(page)
    click_button(page, "btn_start")

    el(page, KEY).wait_for(state="attached", timeout=60_000)
    el(page, KEY).scroll_into_view_if_needed()
    seen = []  # (last step drawn, step-0 logit, largest logit) at each new drawing

    def grown() -> bool:
        now = plot_eval(page, KEY, DRAWN)
        if now and now["peak"] is not None and (not seen or now["last"] > seen[-1][0]):
            seen.append((now["last"], now["first"], now["peak"]))
        return len(seen) >= 2 and seen[-1][2] > 10 * seen[-1][1]

    wait_until(grown, 120, "the largest attention logit drawn ten times its step-0 value", every=0.2)
    assert drawn(page, KEY) >= 2  # the same chart, redrawn as the run went on
    assert seen[0][1] < 4 and seen[-1][0] > seen[0][0]  # "from ~2", and the later drawing reaches further
    # The panel's reading is drawn by the page's reruns: the one at the run's end says what the chart showed.
    wait_until(lambda: "grown more than tenfold" in el(page, "detail").inner_text(), 90,
               "the panel's reading of the grown logits")
