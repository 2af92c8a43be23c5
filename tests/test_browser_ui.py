"""The page in a real Chromium: what it shows and what it must not (links, images or requests from a URL's values),
in dark mode, on a phone, and the console kept clean."""

from __future__ import annotations

from urllib.parse import quote, urlparse

import pytest
from conftest import SERVER_LOGS, end_runs
from test_browser import click_button, el, wait_until

pytestmark = pytest.mark.browser
IMAGE = "![c](http://evil.example/pixel.png)"
LINK = "[Your session expired, click to log in](http://evil.example/phish)"


def play_small_map(page, x_axis: str, backend: str, y_axis: str = "init_std=0.1,1") -> None:
    """On the map page: a 5-step sweep of ``x_axis`` × ``y_axis`` on ``backend``, played to its end."""
    for key, value in (("m_x", x_axis), ("m_y", y_axis), ("m_steps", "5")):
        box = el(page, key).locator("input")
        box.fill(value)
        box.press("Enter")
    wait_until(lambda: el(page, "m_steps").locator("input").input_value() == "5", what="the map's settings")
    el(page, "m_backend").get_by_text(backend).click()
    el(page, "btn_map_launch").locator("button").click()
    # As a person watching it: the live map fetches, and so sees the sweep end, only while it is on screen.
    shown_map = page.locator(".st-key-map_live:not([data-stale='true']), .st-key-chart_map:not([data-stale='true'])")
    shown_map.first.wait_for(timeout=60_000)
    shown_map.first.scroll_into_view_if_needed()
    wait_until(lambda: "Sweep ended" in page.locator("[data-testid='stMain']").inner_text(), timeout=120,
               what="the sweep to end")


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


def server_log(base_url: str) -> str:
    """The output of the server at ``base_url`` (conftest's ``streamlit_server``)."""
    return SERVER_LOGS[base_url].read_text(errors="replace")


def test_no_deploy_button_no_developer_menu_and_a_quiet_server_log(streamlit_server, browser_page):
    page = browser_page
    page.goto(f"{streamlit_server}/stability-map")
    el(page, "btn_map_launch").wait_for(timeout=60_000)
    assert page.locator("[data-testid='stAppDeployButton']").count() == 0
    page.locator("[data-testid='stMainMenu']").first.click()
    menu = page.locator("[data-testid='stMainMenuPopover']")
    menu.wait_for(timeout=10_000)
    items = menu.inner_text()
    assert "Dark" in items and not any(word in items for word in ("Rerun", "Clear cache", "Deploy", "Developer"))
    page.keyboard.press("Escape")

    # A small map on the local process pool: its spawned workers must not run the app (one "missing
    # ScriptRunContext" warning per st call, as they did).
    play_small_map(page, "lr=0.001,0.01", "local")
    log = server_log(streamlit_server)
    for noise in ("missing ScriptRunContext", "no static folder", "Inotify", "Session state does not function"):
        assert noise not in log, log[-3000:]


# Any CSS colour, computed to rgb(r, g, b) in 0-255 or color(srgb r g b / a) in 0-1 (what color-mix() gives).
LUMA = """((c) => { const p = document.createElement('i'); p.style.color = c; document.body.append(p);
    c = getComputedStyle(p).color; p.remove();
    const k = c.startsWith('color(') ? 255 : 1; const v = c.replace(/^color\\(srgb/, '')
    .match(/[\\d.]+/g).map((x) => Number(x) * k); return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; })"""


def luma(page, selector: str, prop: str = "color") -> float:
    """Brightness (0-255) of a CSS colour property of the first element matching ``selector``."""
    return page.evaluate(f"{LUMA}(getComputedStyle(document.querySelector({selector!r})).{prop})")


def test_dark_mode_status_line_and_charts_follow_the_theme(streamlit_server, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(streamlit_server)
        el(page, "btn_start").wait_for(timeout=60_000)
        assert luma(page, "[data-testid='stApp']", "backgroundColor") < 60  # the page itself is dark
        el(page, "w_preset").get_by_role("combobox").click()
        page.get_by_role("option", name="clip it", exact=True).click()
        wait_until(lambda: el(page, "w_steps").locator("input").input_value() == "300", what="the preset's values")
        click_button(page, "btn_start")
        page.locator(".st-key-status_line .gel-label").first.wait_for(timeout=30_000)
        assert luma(page, ".st-key-status_line .gel-label") > 150  # was rgba(49,51,63,.8): dark on dark
        assert luma(page, ".st-key-status_line .gel-badge") > 150
        page.locator(".st-key-chart_loss .gel-plot .main-svg").first.wait_for(timeout=30_000)
        # The first drawing may be the waiting placeholder, which has no title: wait for the run's figure.
        read = """(() => { const d = document.querySelector('.st-key-chart_loss .gel-plot');
            const l = d && d._fullLayout;
            if (!l || !l.title || !l.title.text || !l.title.font) return null;
            return {theme: d.dataset.theme, paper: l.paper_bgcolor, font: l.font.color,
                    title: l.title.font.color}; })()"""
        wait_until(lambda: page.evaluate(read) is not None, what="the loss chart's figure")
        fig = page.evaluate(read)
        assert fig["theme"] == "dark" and fig["paper"].replace(" ", "") == "rgba(0,0,0,0)", fig
        for key in ("font", "title"):
            assert page.evaluate(f"{LUMA}({fig[key]!r})") > 150, fig
    finally:
        end_runs(context)
        context.close()


def box(page, key: str) -> dict:
    return el(page, key).locator("button").first.bounding_box()


def test_pause_resume_and_reset_keep_the_layout_the_speed_honest_and_the_downloads(streamlit_server, browser_page):
    page = browser_page
    page.goto(streamlit_server)
    el(page, "btn_start").wait_for(timeout=60_000)
    el(page, "w_preset").get_by_role("combobox").click()
    page.get_by_role("option", name="clip it", exact=True).click()
    wait_until(lambda: el(page, "w_steps").locator("input").input_value() == "300", what="the preset's values")
    el(page, "w_steps").locator("input").fill("100000")
    el(page, "w_steps").locator("input").press("Enter")
    wait_until(lambda: "steps=100000" in page.evaluate("location.href"), what="the steps")
    before = {key: box(page, key) for key in ("btn_pause", "btn_step", "btn_stop", "btn_reset")}
    click_button(page, "btn_start")
    wait_until(lambda: "running" in el(page, "status").inner_text() and "steps/s" in el(page, "status").inner_text(),
               what="the run to train")
    click_button(page, "btn_pause")
    wait_until(lambda: el(page, "btn_pause").inner_text().strip().endswith("Resume"), what="the Resume label")
    wait_until(lambda: "paused" in el(page, "status").inner_text(), what="the paused status")
    assert "steps/s" not in el(page, "status").inner_text()  # a paused run has no speed
    after = {key: box(page, key) for key in before}
    for key in before:  # the labels changed, the rows did not (measured from Pause: the sidebar may scroll)
        moved = (after[key]["y"] - after["btn_pause"]["y"]) - (before[key]["y"] - before["btn_pause"]["y"])
        assert abs(moved) < 2, (key, before, after)

    click_button(page, "btn_reset")
    wait_until(lambda: "Try this first" in page.locator("[data-testid='stMain']").inner_text(), what="the reset")
    el(page, "dl_csv0").wait_for(timeout=20_000)  # the run just cleared keeps its downloads


PHONE = {"width": 390, "height": 844}
# Every control of the page region: buttons, inputs, sliders, checkboxes, radios, selects, links (the hidden
# bookkeeping control excepted).
CONTROLS = ("button, input, [role='slider'], [role='checkbox'], [role='radio'], [role='combobox'], a[href], "
            "[data-testid='stDownloadButton'] button")


def unreachable(page, region: str) -> list[str]:
    """Controls in ``region`` that cannot be scrolled to, or that no finger reaches: off the phone's width or
    covered by something else."""
    bad = []
    # Hover toolbars are left out (Plotly's modebar, Streamlit's toolbar over a table): they float over their
    # element only while a finger is on it, where their library puts them, and what they offer (zoom, reset,
    # search, full screen) the element's own gestures or the page's download buttons do.
    controls = page.locator(f"{region} :is({CONTROLS}):not(.st-key-drawn_stamp *):not(.modebar *)"
                            ":not([data-testid='stElementToolbar'] *)")
    for i in range(controls.count()):
        c = controls.nth(i)
        if not c.is_visible():
            continue
        name = c.get_attribute("aria-label") or c.inner_text()[:30] or c.evaluate("e => e.outerHTML.slice(0, 80)")
        try:
            c.scroll_into_view_if_needed(timeout=5000)
            # Centred, as a finger scrolls to it: at the very top edge Streamlit's own header covers it.
            c.evaluate("e => e.scrollIntoView({block: 'center', inline: 'nearest'})")
        except Exception:
            if c.is_visible():  # not redrawn by a rerun in between
                bad.append(f"{name}: cannot scroll to it")
            continue
        bb = c.bounding_box()
        # A finger reaches it if some point of it (centre, or either end: a slider's thumb carries a wide value
        # label) is on screen and not covered by something else.
        points = [] if bb is None else [(bb["x"] + dx, bb["y"] + bb["height"] / 2)
                                        for dx in (bb["width"] / 2, min(8, bb["width"] / 2), bb["width"] - 8)]
        hit = any(0 <= x <= PHONE["width"] and page.evaluate(
            "([x, y, e]) => { const h = document.elementFromPoint(x, y); return !!h && "
            "(e.contains(h) || h.contains(e) || !!h.closest('label')); }", [x, y, c.element_handle()])
            for x, y in points)
        if not hit:
            bad.append(f"{name}: off the screen or covered {bb}")
    return bad


def test_phone_width_every_control_is_reachable(streamlit_server, browser):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(f"{streamlit_server}/?compare=1&steps=100000")
        page.locator("[data-testid='stMain'] h1").first.wait_for(timeout=60_000)
        page.locator("[data-testid='stExpandSidebarButton']").click()
        el(page, "btn_start").wait_for(timeout=30_000)
        click_button(page, "btn_start")
        wait_until(lambda: el(page, "w_inspect").count() > 0, what="the comparison to start")
        assert unreachable(page, "[data-testid='stSidebar']") == []
        page.locator("[data-testid='stSidebarCollapseButton'] button, [data-testid='stSidebarCollapseButton']"
                     ).first.click()
        wait_until(lambda: page.locator("[data-testid='stExpandSidebarButton']").is_visible(),
                   what="the sidebar closed")
        el(page, "dl_csv0").wait_for(timeout=30_000)
        assert unreachable(page, "[data-testid='stMain']") == []
        for path, key in (("stability-map", "btn_map_launch"), ("saved-runs", None)):
            page.goto(f"{streamlit_server}/{path}")
            page.locator("[data-testid='stMain'] h1").first.wait_for(timeout=30_000)
            if key:
                el(page, key).wait_for(timeout=30_000)
            assert unreachable(page, "[data-testid='stMain']") == [], path
    finally:
        end_runs(context)
        context.close()


MAP_PLOT = "document.querySelector('.st-key-chart_map .js-plotly-plot')"


def test_clicking_a_map_cell_outlines_it_and_brings_its_details_into_view(streamlit_server, browser_page):
    page = browser_page
    page.set_viewport_size({"width": 1200, "height": 700})  # short: the details start below the map
    page.goto(f"{streamlit_server}/stability-map")
    el(page, "btn_map_launch").wait_for(timeout=60_000)
    play_small_map(page, "lr=0.001,0.01,0.1", "serial")
    page.locator(".st-key-chart_map .js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    page.evaluate("window.scrollTo(0, 0); document.querySelector('[data-testid=\"stMain\"]').scrollTo(0, 0)")
    el(page, "chart_map").scroll_into_view_if_needed()
    # The centre of cell (lr 0.1, init_std 1) in page pixels, from the plot's own axes.
    x, y = page.evaluate(f"""(() => {{ const gd = {MAP_PLOT}, L = gd._fullLayout, r = gd.getBoundingClientRect();
        return [r.left + L._size.l + L.xaxis.d2p(0.1), r.top + L._size.t + L.yaxis.d2p(1)]; }})()""")
    page.mouse.click(x, y)
    picked = lambda key: float(el(page, key).locator("input").first.input_value())  # noqa: E731
    wait_until(lambda: picked("m_cell_x") == 0.1 and picked("m_cell_y") == 1.0, what="the pickers to follow the click")
    outline = page.evaluate(f"""(() => {{ const t = {MAP_PLOT}.data.find((t) => t.name === 'picked cell');
        return t ? [Math.min(...t.x), Math.max(...t.x), Math.min(...t.y), Math.max(...t.y)] : null; }})()""")
    assert outline is not None and outline[0] < 0.1 < outline[1] and outline[2] < 1 < outline[3], outline
    link = page.get_by_role("link", name="Open in the lab")
    wait_until(lambda: 0 <= link.bounding_box()["y"] <= 700 - link.bounding_box()["height"],
               what="the cell's details in view")
    assert "lr=0.1" in link.get_attribute("href")


def test_a_true_false_map_reads_false_true_and_a_click_on_its_true_row_opens_the_lab_with_it_on(streamlit_server,
                                                                                               browser_page):
    page = browser_page
    page.goto(f"{streamlit_server}/stability-map")
    el(page, "btn_map_launch").wait_for(timeout=60_000)
    el(page, "m_base").get_by_role("combobox").click()
    page.get_by_role("option", name="attention logits grow", exact=True).click()  # a transformer: qk_norm applies
    play_small_map(page, "lr=0.01,0.1", "serial", "qk_norm=false,true")
    page.locator(".st-key-chart_map .js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    el(page, "chart_map").scroll_into_view_if_needed()
    ticks = page.evaluate(f"Array.from({MAP_PLOT}.querySelectorAll('.ytick text')).map((t) => t.textContent)")
    assert ticks == ["false", "true"], ticks
    x, y = page.evaluate(f"""(() => {{ const gd = {MAP_PLOT}, L = gd._fullLayout, r = gd.getBoundingClientRect();
        return [r.left + L._size.l + L.xaxis.d2p(0.1), r.top + L._size.t + L.yaxis.d2p(1)]; }})()""")
    page.mouse.click(x, y)
    picked = lambda key: el(page, key).locator("input").first.input_value()  # noqa: E731 (as the picker reads)
    wait_until(lambda: (picked("m_cell_x"), picked("m_cell_y")) == ("0.1", "true"), what="the pickers to follow")
    href = page.get_by_role("link", name="Open in the lab").get_attribute("href")
    assert "qk_norm=true" in href and "lr=0.1" in href and "model=transformer" in href, href


def test_a_running_map_fills_in_from_its_route_and_its_end_reruns_the_page_once(streamlit_server, browser_page):
    page = browser_page
    fetched = []
    page.on("request", lambda r: fetched.append(r.url) if "/api/map/" in r.url else None)
    page.goto(f"{streamlit_server}/stability-map")
    el(page, "btn_map_launch").wait_for(timeout=60_000)
    for key, value in (("m_x", "lr=0.001,0.01,0.1"), ("m_y", "init_std=0.1,1"), ("m_steps", "400")):
        box = el(page, key).locator("input")
        box.fill(value)
        box.press("Enter")
    wait_until(lambda: el(page, "m_steps").locator("input").input_value() == "400", what="the map's settings")
    el(page, "m_backend").get_by_text("serial").click()
    el(page, "btn_map_launch").locator("button").click()
    live = el(page, "map_live")
    live.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    assert page.locator(".st-key-chart_map").count() == 0, "no timer fragment redraws a chart while it runs"
    done = lambda: int(live.locator("[data-done]").first.get_attribute("data-done"))  # noqa: E731
    first = done()
    wait_until(lambda: done() > first, timeout=60, what="a cell more, from the route")
    assert first < 6 and fetched and "/6 cells" in live.inner_text()
    # Nothing reruns on a timer: the end shows only because the element asked for a rerun.
    wait_until(lambda: "Sweep ended" in page.locator("[data-testid='stMain']").inner_text(), timeout=120,
               what="the rerun the live map asks for when the sweep ends")
    page.locator(".st-key-chart_map .js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    assert page.locator(".st-key-map_live").count() == 0 and "saved as" in page.locator(
        "[data-testid='stMain']").inner_text()


def test_opening_a_page_directly_logs_no_404(streamlit_server, browser_page):
    page = browser_page
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: failed.append(m.text) if m.type == "error" else None)
    for path in ("saved-runs", "stability-map"):
        page.goto(f"{streamlit_server}/{path}")
        page.locator("[data-testid='stMain'] h1").first.wait_for(timeout=60_000)
        page.wait_for_function("() => window.__streamlit && window.__streamlit.BACKEND_BASE_URL")
    assert failed == []  # Streamlit's page used to probe /saved-runs/_stcore/health and .../host-config first
