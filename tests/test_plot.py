"""The in-place chart element (components/plot.py): plotly.js served from the app's static folder, the figure
handed over unchanged, and a warning on the page when static serving is not possible."""

from __future__ import annotations

import json
import os

import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs_version
from streamlit.testing.v1 import AppTest

from components import plot
from tests.apptest_helpers import live_figures


def test_plotly_js_is_copied_once_whole_and_named_by_its_version(tmp_path):
    static = tmp_path / "static"
    assert plot.ensure_plotly_js(static)
    target = static / plot.PLOTLY_JS_NAME
    assert target.read_bytes() == plot.PLOTLY_JS_SOURCE.read_bytes()
    assert plot.PLOTLY_JS_NAME == f"plotly-{get_plotlyjs_version()}.min.js"
    os.utime(target, (1, 1))
    assert plot.ensure_plotly_js(static)
    assert target.stat().st_mtime == 1  # a complete copy is left alone
    assert [p.name for p in static.iterdir()] == [plot.PLOTLY_JS_NAME]  # no partial file left behind


def test_a_truncated_copy_is_replaced(tmp_path):
    (tmp_path / plot.PLOTLY_JS_NAME).write_bytes(b"// cut short")
    assert plot.ensure_plotly_js(tmp_path)
    assert (tmp_path / plot.PLOTLY_JS_NAME).stat().st_size == plot.PLOTLY_JS_SOURCE.stat().st_size


def test_an_unwritable_static_folder_is_reported_not_raised(tmp_path):
    blocker = tmp_path / "static"
    blocker.write_text("a file where the folder should be")
    assert plot.ensure_plotly_js(blocker) is False


@pytest.mark.parametrize("base, url", [("", "/app/static/"), ("lab", "/lab/app/static/"),
                                       ("/a/b/", "/a/b/app/static/")])
def test_the_script_url_follows_the_base_url_path(monkeypatch, base, url):
    monkeypatch.setattr(plot.st, "get_option", lambda name: base)
    assert plot.plotly_js_url() == url + plot.PLOTLY_JS_NAME


def _two_charts():
    import plotly.graph_objects as go

    from components import plot

    plot.plotly_figure(go.Figure(go.Scatter(x=[0, 1, 2], y=[1.0, float("nan"), 1e30], name="loss"),
                                 layout={"height": 280, "uirevision": "keep"}), "chart_a")
    plot.plotly_figure(go.Figure(go.Bar(x=["w1", "w2"], y=[3.0, 4.0])), "chart_b")


def test_the_element_carries_the_figure_unchanged_with_its_height_and_script(monkeypatch):
    at = AppTest.from_function(_two_charts).run()
    assert not at.exception
    figures = live_figures(at)
    expected = go.Figure(go.Scatter(x=[0, 1, 2], y=[1.0, float("nan"), 1e30], name="loss"),
                         layout={"height": 280, "uirevision": "keep"})
    assert figures["chart_a"] == json.loads(expected.to_json())  # NaN and 1e30 reach the page as they are
    data = [json.loads(el.proto.json) for el in at.get("bidi_component")]
    assert [d["height"] for d in data] == [280, plot.DEFAULT_HEIGHT]
    assert all(d["src"].endswith("/app/static/" + plot.PLOTLY_JS_NAME) for d in data)
    assert all(d["config"]["displaylogo"] is False for d in data)
    assert all(d["source"] is None and d["every_ms"] is None for d in data)  # nothing to poll: no live run


def _preload():
    from components import plot

    plot.preload()


def test_the_page_says_why_the_charts_cannot_load_plotly_js(monkeypatch):
    at = AppTest.from_function(_preload).run()
    assert not at.exception and not at.warning  # served as configured: plotly.js is there
    options = {"server.enableStaticServing": False, "server.baseUrlPath": ""}
    monkeypatch.setattr(plot.st, "get_option", options.get)
    at = AppTest.from_function(_preload).run()
    assert not at.exception and "enableStaticServing" in at.warning[0].value


def test_dark_swaps_the_ink_and_paper_and_keeps_the_data_colours():
    from components import charts as C
    from components import theme as T
    from tests.test_charts import make_snapshot

    fig = C.grad_norm_figure([make_snapshot({"grad_norm_pre_clip": [1.0, 2.0]})]).to_plotly_json()
    dark = T.dark(fig)
    assert dark["layout"]["paper_bgcolor"] == dark["layout"]["plot_bgcolor"] == "rgba(0,0,0,0)"
    assert dark["layout"]["title"]["font"]["color"] == T.DARK_SWAPS[fig["layout"]["title"]["font"]["color"].lower()]
    pre = next(t for t in dark["data"] if t.get("name") == "pre-clip")
    assert pre["line"]["color"] == T.PRE_CLIP  # the data keep their colours
