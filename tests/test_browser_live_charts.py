"""The live view in a real Chromium: the status line polls the live route and moves several times a second,
each chart is updated in place while the run trains (the same chart on the page, redrawn with the new figure),
a zoom survives the refresh, and a chart below the fold is drawn when it is scrolled into view.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import pytest
from test_browser import click_button, drawn, el, last_step_drawn, plot_eval, set_number, steps, wait_until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def _charts_follow_every_step():
    """This module's server draws the charts at the 0.25 s refresh (the page's default is 1 s): the streaming
    test watches them keep up with the trainer. Autouse, so it is set before the module's server starts."""
    old = os.environ.get("GEL_CHART_REFRESH_S")
    os.environ["GEL_CHART_REFRESH_S"] = "0.25"
    yield
    if old is None:
        os.environ.pop("GEL_CHART_REFRESH_S", None)
    else:
        os.environ["GEL_CHART_REFRESH_S"] = old


def asked(url: str) -> list[tuple[str, str]]:
    """(chart key, its query) of each chart a request asks for: the streaming charts all in one poll of the charts
    route (``/api/charts?c=<key>?<query>&c=...``), the others alone (``/api/chart/<key>?<query>``)."""
    if "/api/charts?" in url:
        return [tuple(c.split("?", 1)) for c in parse_qs(urlsplit(url).query)["c"]]
    if "/api/chart/" in url:
        return [tuple(url.split("/api/chart/")[1].split("?", 1))]
    return []

# The distinct step counts the status line shows during the next 2 s, noted by the page as it draws them.
SHOWN_IN_2_S = """() => new Promise((done) => {
  const root = document.querySelector('.st-key-status [data-step]');
  const seen = new Set([root.dataset.step]);
  const watch = new MutationObserver(() => seen.add(root.dataset.step));
  watch.observe(root, {attributes: true, attributeFilter: ['data-step']});
  setTimeout(() => { watch.disconnect(); done([...seen]); }, 2000);
})"""


def test_live_charts_update_in_place_keep_the_zoom_and_draw_when_scrolled_to(streamlit_server, browser_page):
    page = browser_page
    polls, charts = [], []
    page.on("response", lambda r: polls.append(r.status) if "/api/live/" in r.url else None)
    page.on("response", lambda r: charts.extend((key, r.status) for key, _ in asked(r.url)))
    page.goto(streamlit_server)
    el(page, "btn_start").wait_for(timeout=60_000)
    set_number(page, "w_steps", "100000", url_has="steps=100000")
    click_button(page, "btn_start")

    # The status line moves by itself, with no rerun: several new step counts in 2 s. The page itself notes each
    # count it shows (a MutationObserver), so a slow test process cannot under-count by sampling too rarely.
    wait_until(lambda: bool(steps(page)) and steps(page)[0] > 0, what="the first step count")
    shown = page.evaluate(SHOWN_IN_2_S)
    assert len(shown) >= 5, f"the status line showed only {shown} in 2 s"
    assert polls.count(200) >= 5 and set(polls) == {200}
    wait_until(lambda: drawn(page, "chart_loss") >= 1, what="the loss chart's first drawing")

    # Tag the chart's div: a remount would replace it with a new, untagged one.
    plot_eval(page, "chart_loss", "(d.__tag = 'first', true)")
    first_revision, first_x = drawn(page, "chart_loss"), last_step_drawn(page, "chart_loss")
    wait_until(lambda: drawn(page, "chart_loss") >= first_revision + 2, timeout=30, what="two more refreshes")
    assert plot_eval(page, "chart_loss", "d.__tag") == "first"  # the same chart, updated
    assert last_step_drawn(page, "chart_loss") > first_x  # ... with the new steps

    # Zoom into the first 50 steps, as a drag on the chart would; the next refreshes keep that range.
    plot_eval(page, "chart_loss", "(Plotly.relayout(d, {'xaxis.range': [0, 50]}), true)")
    zoomed = drawn(page, "chart_loss")
    wait_until(lambda: drawn(page, "chart_loss") >= zoomed + 2, timeout=30, what="refreshes after the zoom")
    assert plot_eval(page, "chart_loss", "d._fullLayout.xaxis.range") == [0, 50]
    assert last_step_drawn(page, "chart_loss") > 50  # the data kept growing behind the zoomed view

    # The refreshes came from the live chart route. The activation statistics sit below the fold of a
    # 1000-pixel-high window: never fetched nor drawn until scrolled to.
    assert ("chart_loss", 200) in charts and {status for _, status in charts} == {200}
    el(page, "chart_acts").wait_for(state="attached", timeout=30_000)
    assert drawn(page, "chart_acts") == 0 and "chart_acts" not in {key for key, _ in charts}
    el(page, "chart_acts").scroll_into_view_if_needed()
    wait_until(lambda: drawn(page, "chart_acts") >= 1, timeout=20, what="the scrolled-to chart to draw")
    # Playwright delivers the page's events while it is called: wait through it, not beside it.
    wait_until(lambda: page.wait_for_timeout(100) or ("chart_acts", 200) in charts, timeout=20,
               what="the scrolled-to chart's own refresh")
    assert plot_eval(page, "chart_acts", "d.querySelectorAll('.main-svg').length") > 0
    click_button(page, "btn_stop")


# The newest step in the loss line that plotly.js drew, each time the chart draws, for the next 3 s: read from the
# chart's own trace data, not the status line.
LOSS_STEPS_IN_3_S = """() => new Promise((done) => {
  const d = document.querySelector('.st-key-chart_loss:not([data-stale="true"]) .gel-plot');
  const newest = () => {
    const t = (d._fullData || []).find((t) => t.name === 'loss');
    return t ? t.x[t.x.length - 1] : -1;
  };
  const seen = [[performance.now(), newest()]];
  const watch = new MutationObserver(() => seen.push([performance.now(), newest()]));
  watch.observe(d, {attributes: true, attributeFilter: ['data-drawn']});
  setTimeout(() => { watch.disconnect(); done(seen); }, 3000);
})"""


def test_the_loss_line_gets_new_steps_twice_a_second_and_a_chart_off_screen_fetches_nothing(streamlit_server,
                                                                                             browser_page):
    page = browser_page
    polls: list[list[tuple[str, str]]] = []  # per request: (key, query) of each chart it asks for
    page.on("request", lambda r: polls.append(asked(r.url)) if "/api/chart" in r.url else None)
    page.goto(streamlit_server)
    el(page, "btn_start").wait_for(timeout=60_000)
    set_number(page, "w_steps", "100000", url_has="steps=100000")
    click_button(page, "btn_start")
    wait_until(lambda: last_step_drawn(page, "chart_loss") > 20, timeout=30, what="the loss line's first steps")
    first = len(polls)
    seen = page.evaluate(LOSS_STEPS_IN_3_S)
    steps = [s for _, s in seen]
    assert steps == sorted(steps), steps  # appended, never redrawn from an older figure
    newer = [t for (t, s), (_, before) in zip(seen[1:], seen, strict=False) if s > before]  # noqa: F841
    assert len(newer) >= 6, f"the loss line moved only {len(newer)} times in 3 s: {seen}"  # >= twice a second
    # The loss chart asked about four times a second, with the other streaming charts on screen in the same
    # request (one poll for them all), each sending its cursor: the rows it got were appended, none needed the
    # whole figure. The activation chart sits below the fold of a 1000-pixel window: it asked for nothing.
    loss = [q for poll in polls[first:] for key, q in poll if key == "chart_loss"]
    assert len(loss) >= 6 and all("&after=" in q and "&view=" in q for q in loss), loss
    with_loss = [poll for poll in polls[first:] if any(key == "chart_loss" for key, _ in poll)]
    assert all(len(poll) >= 2 for poll in with_loss), with_loss  # the gradient-norm chart beside it, at least
    assert "chart_acts" not in {key for poll in polls for key, _ in poll}, polls
    click_button(page, "btn_stop")


# What a streaming chart drew against what it holds: the loss line's points (drawn by plotly.js and held by the
# page), where its SVG line ends and where plotly.js' axes put its newest held point, how many points plotly.js'
# hover data has, the x axis' range, and for a one-step chart the title in its text node, in Plotly's layout and
# held.
DRAWN_VS_HELD = """(d) => {
  if (!d || !d._fullLayout || !d.__held) return {inPlace: 0, appended: 0, end: null};  // not drawn yet
  const i = d.__held.data.findIndex((t) => t.name === 'loss');
  const full = i >= 0 ? d._fullData[i] : null;
  const held = i >= 0 ? d.__held.data[i] : null;
  let end = null, want = null;
  const group = [...d.querySelectorAll('.scatterlayer .trace')].find((g) => g.__data__?.[0]?.trace?.index === i);
  const lines = group ? group.querySelectorAll('path.js-line') : [];
  if (full && lines.length) {  // (not while plotly.js is between drawing its axes and its traces)
    const m = /(-?[\\d.]+),(-?[\\d.]+)$/.exec(lines[lines.length - 1].getAttribute('d'));
    end = m ? [Number(m[1]), Number(m[2])] : null;
    const k = held.x.length - 1;
    want = [d._fullLayout.xaxis.c2p(held.x[k]), d._fullLayout.yaxis.c2p(held.y[k])];
  }
  return {inPlace: Number(d.dataset.inPlace || 0), appended: Number(d.dataset.appended || 0),
          drawn: Number(d.dataset.drawn || 0),
          fullX: full ? Array.from(full.x) : null, fullY: full ? Array.from(full.y) : null,
          heldX: held ? held.x : null, heldY: held ? held.y : null, end, want,
          hoverPoints: i >= 0 ? d.calcdata[i].length : null,
          range: d._fullLayout.xaxis.range, autorange: d._fullLayout.xaxis.autorange,
          title: [d.querySelector('.g-gtitle .gtitle')?.textContent, d._fullLayout.title.text,
                  d.__held.layout.title?.text]};
}"""


def drawn_vs_held(page, key: str) -> dict:
    return plot_eval(page, key, f"({DRAWN_VS_HELD})(d)")


def settled(page, key: str) -> dict:
    """``drawn_vs_held`` at a moment between draws, when the page's data and plotly.js' agree point for point."""
    for _ in range(50):
        a = drawn_vs_held(page, key)
        if a["fullX"] == a["heldX"] and a["end"] is not None:
            break
        page.wait_for_timeout(20)
    return a


def test_new_points_inside_the_axes_are_drawn_in_place_and_are_what_the_chart_holds(streamlit_server, browser_page):
    """A poll that only adds points inside the axes as drawn moves just those traces: a line's new points are added
    to the end of its SVG path, a one-step chart's bars by Plotly.animate (no axes or layout pass). What is then on
    screen must be every point the chart holds: plotly.js' trace data is the held points, and the line ends where
    plotly.js' own axes put the newest one. With the pointer over the chart plotly.js draws every poll itself, so
    its hover data has every point. The x axis must have room for the next points, and a one-step chart's title
    must name its newest step in the page, in Plotly's layout and held."""
    page = browser_page
    page.goto(streamlit_server)
    el(page, "btn_start").wait_for(timeout=60_000)
    set_number(page, "w_steps", "100000", url_has="steps=100000")
    click_button(page, "btn_start")
    el(page, "chart_acts").scroll_into_view_if_needed()
    wait_until(lambda: drawn_vs_held(page, "chart_acts")["inPlace"] >= 3, timeout=60, what="chart_acts: in place")
    for _ in range(50):  # between two draws: the title drawn is the one held
        t = drawn_vs_held(page, "chart_acts")["title"]
        if t[0] == t[2]:
            break
        page.wait_for_timeout(20)
    assert t[0] == t[1] == t[2] and "step" in t[0], t
    el(page, "chart_loss").scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    wait_until(lambda: drawn_vs_held(page, "chart_loss")["appended"] >= 3, timeout=60, what="chart_loss: appended")
    a = settled(page, "chart_loss")
    assert a["appended"] < a["drawn"]  # the first draw, each move of an axis, and one every 2 s are plotly.js'
    assert a["fullX"] == a["heldX"] and a["fullY"] == pytest.approx(a["heldY"], rel=1e-6), "drawn != held"
    assert a["end"] == pytest.approx(a["want"], abs=0.011), (a["end"], a["want"])  # on screen: the newest point
    assert a["autorange"] is True and a["range"][1] > max(a["heldX"]), a["range"]  # room on the right
    # The pointer over the chart: the draws from the next one on are plotly.js' own, its hover data every point.
    el(page, "chart_loss").hover()
    page.wait_for_timeout(100)
    before = drawn_vs_held(page, "chart_loss")
    wait_until(lambda: drawn_vs_held(page, "chart_loss")["drawn"] >= before["drawn"] + 3, timeout=30,
               what="chart_loss: three draws under the pointer")
    b = settled(page, "chart_loss")
    assert b["appended"] == before["appended"], "a line was extended under the pointer"
    assert b["hoverPoints"] == len(b["heldX"]) and b["fullX"] == b["heldX"]
    page.mouse.move(0, 0)  # and away from it, the lightest draws resume
    wait_until(lambda: drawn_vs_held(page, "chart_loss")["appended"] > b["appended"], timeout=30,
               what="chart_loss: appended again")
    click_button(page, "btn_stop")
