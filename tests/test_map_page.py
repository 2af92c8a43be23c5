"""The stability map page and the lab's theory panel: the map figure on plain data, then the pages via AppTest.

The page reruns on no timer: while a sweep runs, its map is an element that polls the map route (tested here
through the route, in process); tests drive the reruns with ``at.run()``. Every sweep and run a test starts is
stopped in its teardown.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from bench import asgi
from components import live_api
from components import map_chart as M
from tests.apptest_helpers import live_figures, poll, shown
from training import sweep as SW
from training.config import Config
from training.manager import get_manager

APP = str(Path(__file__).resolve().parent.parent / "app.py")


# The figure, on plain data.
def test_outcome_map_colours_each_code_blanks_unrun_cells_and_draws_the_critical_line():
    codes = np.array([[0, 1], [2, -1], [3, 3]])
    counts = np.zeros((3, 2, 4), dtype=int)
    counts[0, 0, 0] = counts[2, 1, 3] = 2
    line = SW.CriticalLine("y", 0.09, (1e-3, 1.0), (0.09, 0.09), 256)
    fig = M.outcome_map_figure([1e-3, 1.0], [0.01, 0.1, 1.0], codes, counts, line, "lr", "init_std", True, True)
    heat = fig.data[0]
    assert heat.z[1][1] is None, "a cell not run yet is blank"
    assert heat.z[0][0] == 0 and heat.z[2][1] == 3
    assert (heat.zmin, heat.zmax) == (-0.5, 3.5)  # code k maps to the middle of [k/4, (k+1)/4]
    for k, name in enumerate(SW.OUTCOMES):
        assert tuple(heat.colorscale[2 * k]) == (k / 4, M.COLORS[name])
        assert tuple(heat.colorscale[2 * k + 1]) == ((k + 1) / 4, M.COLORS[name])
    assert M.COLORS == {"learned": "#2CA02C", "stuck": "#9CA3AF", "vanished": "#1F77B4", "exploded": "#D62728"}
    chi = next(t for t in fig.data if t.name == line.label)
    assert list(chi.y) == [0.09, 0.09] and list(chi.x) == [1e-3, 1.0]
    cells = next(t for t in fig.data if t.name == "cells")
    assert "learned 2" in cells.text[0] and cells.text[3] == "not run yet"
    assert hover(cells, 0) == "lr = 0.001<br>init_std = 0.01<br>learned 2" and fig.layout.xaxis.ticktext[0] == "0.001"
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    no_line = M.outcome_map_figure([1], [2], np.array([[0]]), np.ones((1, 1, 4), int))
    assert not [t for t in no_line.data if getattr(t, "mode", None) == "lines"]


def hover(trace, k: int) -> str:
    """The hover text of point ``k`` of a scatter trace, as Plotly fills in its template."""
    out = trace.hovertemplate.replace("%{text}", trace.text[k]).replace("<extra></extra>", "")
    for i, v in enumerate(trace.customdata[k]):
        out = out.replace(f"%{{customdata[{i}]}}", v)
    return out


# A character transformer small enough that a 2 x 2 map of 2-step cells trains in about a second.
TINY_LM = Config(model="transformer", dataset="pycode", optimizer="adam", d_model=32, context=16, batch_size=4)


def test_a_true_false_axis_reads_false_and_true_on_its_ticks_and_hover_a_numeric_one_its_numbers():
    sweep = SW.Sweep(TINY_LM, "lr=0.001,0.01", "qk_norm=false,true", steps=2)
    fig = M.sweep_figure(list(sweep.run("serial")), sweep, "done", (0.01, 1))
    assert fig.layout.yaxis.tickvals == (0, 1) and fig.layout.yaxis.ticktext == ("false", "true")
    assert fig.layout.xaxis.tickvals == (0.001, 0.01) and fig.layout.xaxis.ticktext == ("0.001", "0.01")
    cells = next(t for t in fig.data if t.name == "cells")
    k = next(k for k, (x, y) in enumerate(zip(cells.x, cells.y, strict=True)) if (x, y) == (0.01, 1))
    assert hover(cells, k).startswith("lr = 0.01<br>qk_norm = true<br>")
    assert hover(cells, 0).startswith("lr = 0.001<br>qk_norm = false<br>")
    _, x1, y0, y1 = outline(json.loads(fig.to_json()))
    assert 0.01 < x1 and y0 < 1 < y1 and y0 > 0  # the picked cell is the true row's, not the false one's


def test_a_choice_axis_reads_its_names_and_an_integer_axis_whole_numbers():
    sweep = SW.Sweep(TINY_LM, "norm_position=post,pre", "context=16,128", steps=2)
    fig = M.sweep_figure(list(sweep.run("serial")), sweep, "done", (1, 16))
    assert fig.layout.xaxis.ticktext == ("pre", "post") and fig.layout.yaxis.ticktext == ("16", "128")
    assert fig.layout.xaxis.type == "linear"
    assert hover(next(t for t in fig.data if t.name == "cells"), 1).startswith("norm_position = post<br>context = 16")


def test_a_picked_cell_from_a_url_is_one_of_the_axis_values_or_the_first():
    axis = SW.parse_axis("lr=1e-3,0.1,1")
    assert M.picked(axis, "0.1") == 0.1 and M.picked(axis, 1.0) == 1.0
    for stray in ("0.5", "nan", "lots", None):  # another sweep's value, or not a number: the first cell
        assert M.picked(axis, stray) == 1e-3


# The map route: a sweep's live state, built as the page builds it.
@pytest.fixture
def sweep_job():
    """Start a serial 2 x 2 sweep of ``steps`` steps a cell; stopped at teardown."""
    jobs = []

    def start(steps: int):
        x, y = SW.parse_axis("lr=1e-3,1"), SW.parse_axis("init_std=0.01,1")
        base = Config(hidden_sizes=(8,))
        base = base.replace(**SW.implied(base, (x.name, y.name)))
        jobs.append(get_manager().start_sweep(SW.Sweep(base, x, y, steps=steps), "serial"))
        return jobs[-1]

    yield start
    for job in jobs:
        assert job.stop(), "a sweep thread outlived its test"


def get_map(job_id: str, pick: tuple) -> tuple[int, dict, dict]:
    status, body, headers = asgi.get(live_api.map_url(job_id, pick))
    return status, json.loads(body), headers


def outline(figure: dict) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of the picked cell's outline in a map figure."""
    t = next(t for t in figure["data"] if t.get("name") == "picked cell")
    return min(t["x"]), max(t["x"]), min(t["y"]), max(t["y"])


def test_the_map_route_answers_a_running_sweeps_map_and_progress(sweep_job):
    job = sweep_job(2000)
    code, body, headers = get_map(job.id, (1, 0.01))
    assert code == 200 and headers["cache-control"] == "no-store"
    assert body["alive"] is True and body["total"] == 4 and 0 <= body["done"] < 4
    assert body["text"].startswith(f"{body['done']}/4 cells, ") and body["text"].endswith(" s")
    figure = json.loads(body["figure"])
    assert figure["layout"]["title"]["text"].endswith(" · " + body["text"])
    heat = figure["data"][0]
    assert len(heat["z"]) == 2 and len(heat["z"][0]) == 2
    assert sum(v is not None for row in heat["z"] for v in row) == body["done"]
    x0, x1, y0, y1 = outline(figure)
    assert x0 < 1 < x1 and y0 < 0.01 < y1 and x0 > 1e-3  # the cell the URL picked, not the first
    _, body, _ = get_map(job.id, ("0.5", "nope"))  # values on no axis: the first cell, as the page's default
    x0, x1, y0, y1 = outline(json.loads(body["figure"]))
    assert x0 < 1e-3 < x1 < 1 and y0 < 0.01 < y1 < 1


def test_the_map_route_answers_an_ended_sweep_as_the_page_draws_it(sweep_job):
    job = sweep_job(5)
    job.thread.join(timeout=60)  # to its end: stop() would cancel it
    assert not job.alive
    code, body, _ = get_map(job.id, (1e-3, 1))
    results = job.snapshot()
    text = M.progress_text(job, len(results), False)
    assert code == 200 and body["alive"] is False and body["done"] == body["total"] == len(results) == 4
    assert body["text"] == text and " cells in " in text
    assert json.loads(body["figure"]) == json.loads(M.sweep_figure(results, job.sweep, text, (1e-3, 1)).to_json())


def test_the_map_route_answers_404_for_a_sweep_not_in_this_server():
    code, body, _ = get_map("m" + "0" * 24, (1, 1))
    assert code == 404 and "no sweep" in body["error"]


# The map page.
def _map_page():
    from components import page_map

    page_map.render()


@pytest.fixture
def map_at(tmp_path, monkeypatch):
    monkeypatch.setenv("GEL_DATA_DIR", str(tmp_path))
    at = AppTest.from_function(_map_page, default_timeout=30)
    yield at
    job = _job(at)
    if job is not None:
        job.stop()
        assert not job.alive, "a sweep thread outlived its test"


def _job(at):
    """The page's sweep: the page keeps only its id, the manager holds the job."""
    return get_manager().sweep(at.session_state["map_job_id"]) if "map_job_id" in at.session_state else None


def launch_serial(at, x: str, y: str, steps: int):
    """Launch a sweep of the x and y axes on the serial backend from the page; the job it started, or None."""
    at.run()
    at.text_input(key="m_x").input(x)
    at.text_input(key="m_y").input(y)
    at.number_input(key="m_steps").set_value(steps)
    at.radio(key="m_backend").set_value("serial")
    at.button(key="btn_map_launch").click().run()
    return _job(at)


def map_z(at):
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return [[-1 if v is None else v for v in row] for row in spec["data"][0]["z"]]


def test_app_routes_to_the_map_page():
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    source = Path(APP).read_text()
    assert 'url_path="stability-map"' in source and "page_map.render" in source


def test_map_page_renders_and_a_bad_axis_shows_an_error_not_a_traceback(map_at):
    map_at.run()
    assert not map_at.exception
    map_at.text_input(key="m_x").input("lr=1:1e-4:9")  # lo above hi
    map_at.button(key="btn_map_launch").click().run()
    assert not map_at.exception
    assert any("is above hi" in e.value for e in map_at.error)
    map_at.text_input(key="m_x").input("nonsense")
    map_at.button(key="btn_map_launch").click().run()
    assert any("expected name=lo:hi:n" in shown(e.value) for e in map_at.error)


def test_a_tiny_sweep_fills_the_map_saves_it_and_reloads_it(map_at):
    job = launch_serial(map_at, "lr=1e-3,1", "init_std=0.01,1", 20)
    assert not map_at.exception and not map_at.error
    poll(map_at, lambda at: not job.alive and job.saved is not None)
    map_at.run()
    results = job.snapshot()
    assert len(results) == 4 and job.error is None and job.saved.startswith("saved as")
    _, _, codes, _ = SW.outcome_grid(results, job.sweep.x.values, job.sweep.y.values)
    assert map_z(map_at) == codes.tolist()
    assert any("How a cell is classified" in c.value for c in map_at.caption)
    stored = SW.list_stored()
    assert len(stored) == 1 and stored[0]["cells"] == 4 and stored[0]["complete"]
    map_at.selectbox(key="m_stored").set_value(stored[0]["id"]).run()
    assert not map_at.exception and map_z(map_at) == codes.tolist()
    assert any("saved, 4 cells" in json.loads(c.proto.spec)["layout"]["title"]["text"]
               for c in map_at.get("plotly_chart"))


def test_a_true_false_map_page_reads_false_true_and_opens_the_true_cell_with_qk_norm_on_in_the_lab(map_at):
    import urllib.parse

    map_at.run()
    map_at.selectbox(key="m_base").set_value("attention logits grow")  # a transformer, where qk_norm applies
    job = launch_serial(map_at, "lr=0.01", "qk_norm=false,true", 5)
    assert not map_at.exception and not map_at.error
    poll(map_at, lambda at: not job.alive and job.saved is not None)
    map_at.run()
    spec = json.loads(map_at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["yaxis"]["ticktext"] == ["false", "true"] and spec["layout"]["yaxis"]["tickvals"] == [0, 1]
    picker = map_at.selectbox(key="m_cell_y")
    assert picker.options == ["false", "true"] and picker.value == 0
    picker.set_value(1).run()
    assert not map_at.exception and map_at.selectbox(key="m_cell_y").value == 1
    link = next(b for b in map_at.get("link_button") if b.proto.label == "Open in the lab").proto.url
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))
    assert query["qk_norm"] == "true" and query["model"] == "transformer"
    lab = AppTest.from_file(APP, default_timeout=30)
    lab.query_params.update(query)
    lab.run()
    assert not lab.exception and lab.checkbox(key="w_qk_norm").value is True
    assert lab.selectbox(key="w_model").value == "transformer"
    stored = SW.list_stored()  # listed in words too
    assert [s["label"] for s in stored] == ["lr=0.01 x qk_norm=false,true"]


def live_map(at) -> dict | None:
    """What the live map element was handed at the last rerun (components/page_map.py), or None."""
    for el in at.get("bidi_component"):
        if el.proto.component_name == "gel_map":
            return json.loads(el.proto.json)
    return None


def test_a_running_sweep_is_a_live_map_polling_its_route_with_no_timer_fragment(map_at, monkeypatch):
    import streamlit

    timers = []
    fragment = streamlit.fragment

    def recording(func=None, *, run_every=None):
        timers.append(run_every)
        return fragment(func, run_every=run_every)

    monkeypatch.setattr(streamlit, "fragment", recording)
    job = launch_serial(map_at, "lr=1e-3,1", "init_std=0.01,1", 2000)
    assert not map_at.exception and not map_at.error
    data = live_map(map_at)
    assert job.alive and data is not None and data["alive"] is True, "the running sweep's map is the live element"
    assert data["source"] == live_api.map_url(job.id, (1e-3, 0.01)) and data["every_ms"] == 1000
    assert data["sweep"] == job.id and data["total"] == 4 and data["text"].startswith(f"{data['done']}/4 cells")
    assert json.loads(data["figure"])["layout"]["title"]["text"].endswith(data["text"])
    assert not map_at.get("plotly_chart") and all(t is None for t in timers), timers
    map_at.selectbox(key="m_cell_x").set_value(1.0).run()  # the pickers still work while it runs
    assert live_map(map_at)["source"] == live_api.map_url(job.id, (1.0, 0.01))
    assert job.stop(timeout=60)
    map_at.run()  # the rerun the element asks for once the route says the sweep ended
    assert live_map(map_at) is None and map_at.get("plotly_chart"), "the final map is the clickable chart"
    assert any("Sweep ended" in c.value for c in map_at.caption)
    assert all(t is None for t in timers), timers


def test_cancel_stops_the_sweep_between_cells_and_saves_what_finished(map_at):
    job = launch_serial(map_at, "lr=1e-3:1:6", "init_std=0.01:1:6", 200)
    poll(map_at, lambda at: len(job.snapshot()) >= 1)
    map_at.button(key="btn_map_cancel").click().run()
    poll(map_at, lambda at: not job.alive and job.saved is not None)
    assert job.sweep.cancelled and 1 <= len(job.snapshot()) < 36
    assert "(incomplete)" in job.saved


def test_a_sweep_launched_with_every_slot_taken_is_refused_in_words(map_at, monkeypatch):
    monkeypatch.setattr(get_manager(), "max_running", 0)  # as if the runs held every slot
    map_at.run()
    map_at.radio(key="m_backend").set_value("serial")
    map_at.button(key="btn_map_launch").click().run()
    assert not map_at.exception and _job(map_at) is None
    assert any("every training slot is in use" in e.value for e in map_at.error)


# The theory panel on the lab page.
@pytest.fixture
def lab_at():
    at = AppTest.from_file(APP, default_timeout=30)
    yield at
    get_manager().stop_all(timeout=5.0)
    assert not [r for r in get_manager().runners() if r.alive], "a training thread outlived its test"


def start_preset(at, preset):
    at.run()
    at.selectbox(key="w_preset").set_value(preset).run()
    at.button(key="btn_start").click().run()
    assert not at.exception


def chart_titles(at) -> list[str]:
    """Titles of the charts on the page: Plotly charts and the lab's live charts alike."""
    return [fig["layout"]["title"]["text"] for fig in live_figures(at).values()]


def test_theory_panel_explains_the_exploding_mlp(lab_at):
    start_preset(lab_at, "watch it explode")
    poll(lab_at, lambda at: any("Why it explodes" == e.label for e in at.expander))
    assert any("this network explodes" in m.value for m in lab_at.markdown)
    assert any(t.startswith("Backward signal per layer") for t in chart_titles(lab_at))


def test_theory_panel_shows_the_spectrum_for_a_recurrent_run(lab_at):
    start_preset(lab_at, "RNN on long sequences explodes")
    poll(lab_at, lambda at: any(t.startswith("Recurrent matrix") for t in chart_titles(at)))
    assert any("1/gamma" in m.value for m in lab_at.markdown)


def test_weight_gradients_after_an_explosion_come_from_the_last_finite_step():
    from types import SimpleNamespace

    from test_charts import make_snapshot

    from components.theory_panel import last_finite_weight_grads

    snap = make_snapshot({"grad_norm/blocks.0.fc.weight": [1.0, 2.0, 4.0, np.inf]})
    snap.latest = SimpleNamespace(step=3, grad_norms=np.array([np.inf, 1.0, np.nan, 1.0]))
    grads, step = last_finite_weight_grads(snap)
    assert step == 2 and grads.tolist() == [4.0]  # the head is left out: one hidden weight
    snap.latest = SimpleNamespace(step=3, grad_norms=np.array([5.0, 1.0, 2.0, 1.0]))
    assert last_finite_weight_grads(snap)[1] == 3
