"""The stability map page and the lab's theory panel: the map figure on plain data, then the pages via AppTest.

AppTest never fires ``run_every``: tests poll with ``at.run()``. Every sweep and run a test starts is stopped in
its teardown.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from components import map_chart as M
from tests.apptest_helpers import live_figures, poll, shown
from training import sweep as SW
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
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    no_line = M.outcome_map_figure([1], [2], np.array([[0]]), np.ones((1, 1, 4), int))
    assert not [t for t in no_line.data if getattr(t, "mode", None) == "lines"]


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
    map_at.run()
    map_at.text_input(key="m_x").input("lr=1e-3,1")
    map_at.text_input(key="m_y").input("init_std=0.01,1")
    map_at.number_input(key="m_steps").set_value(20)
    map_at.radio(key="m_backend").set_value("serial")
    map_at.button(key="btn_map_launch").click().run()
    assert not map_at.exception and not map_at.error
    job = _job(map_at)
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


def test_cancel_stops_the_sweep_between_cells_and_saves_what_finished(map_at):
    map_at.run()
    map_at.text_input(key="m_x").input("lr=1e-3:1:6")
    map_at.text_input(key="m_y").input("init_std=0.01:1:6")
    map_at.number_input(key="m_steps").set_value(200)
    map_at.radio(key="m_backend").set_value("serial")
    map_at.button(key="btn_map_launch").click().run()
    job = _job(map_at)
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
