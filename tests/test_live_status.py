"""The live routes. The status line's numbers, in the route's answer and in the status element's data, are the
run's own values, formatted once in Python and JSON-safe when the run has gone non-finite; a chart's refresh is
the figure a rerun would draw."""

from __future__ import annotations

import json
import math
from dataclasses import replace

from streamlit.testing.v1 import AppTest

from bench import asgi
from components import live_api, live_status, plot
from tests.apptest_helpers import live_status as element_status
from training.config import Config, from_preset
from training.manager import get_manager


def get(path: str) -> tuple[int, dict, dict]:
    """GET ``path`` from the live routes, as the ASGI server would call them: (status, JSON body, headers)."""
    status, body, headers = asgi.get(path)
    return status, json.loads(body), headers


def test_the_route_answers_the_runs_own_numbers():
    runner = get_manager().start(Config(steps=25, hidden_sizes=(16,)))
    assert runner.wait(timeout=60)
    code, body, headers = get(live_api.API_PREFIX + runner.id)
    assert code == 200 and headers["cache-control"] == "no-store"
    snap = runner.snapshot(history=False)
    (run,) = body["runs"]
    assert body["alive"] is False and run["state"] == snap.status == "finished"
    assert run["step"] == snap.step == 25 and run["step_text"] == "25" and run["steps_text"] == "25"
    metrics = dict(run["metrics"])
    assert metrics["Loss"] == format(snap.latest.loss, ".3g")
    assert metrics["‖g‖ before clip"] == format(snap.latest.grad_norm_pre_clip, ".3g")
    assert "clipping off" in run["detail"] and "lr 0.01" in run["detail"]
    assert "clipped on 0.0% of steps" in run["detail"]


def test_the_detail_says_on_what_share_of_steps_clipping_engaged():
    runner = get_manager().start(Config(steps=20, hidden_sizes=(16,), clip="agc", clip_threshold=0.01))
    assert runner.wait(timeout=60)
    snap = runner.snapshot()
    clipped = snap.series("clipped")[1]
    assert len(clipped) == 20 and snap.clipped_steps == int(clipped.sum()) > 0
    detail = live_status.run_status(snap)["detail"]
    assert f"AGC λ = 0.01 (clipped on {clipped.mean():.1%} of steps)" in detail
    assert "clipped on" not in live_status.run_status(replace(snap, clipped_steps=None))["detail"]  # not counted
    half = replace(snap, step=8, clipped_steps=3)  # the share counts every mode's steps so far
    assert "(clipped on 37.5% of steps)" in live_status.run_status(half)["detail"]


def test_a_run_gone_non_finite_answers_valid_json_with_its_inf_and_nan_shown():
    runner = get_manager().start(from_preset("watch it explode", steps=300))
    assert runner.wait(timeout=60)
    snap = runner.snapshot(history=False)
    assert snap.status == "exploded" and not math.isfinite(snap.latest.grad_norm_pre_clip)
    code, body, _ = get(live_api.API_PREFIX + runner.id)  # Starlette refuses NaN in JSON: it would raise
    assert code == 200
    metrics = dict(body["runs"][0]["metrics"])
    assert metrics["‖g‖ before clip"] == f"✕ {snap.latest.grad_norm_pre_clip}" in ("✕ inf", "✕ nan")
    loss = snap.latest.loss  # the seed net's explosion step: NaN (the step before: 1.25e+27, huge but finite)
    assert metrics["Loss"] == (format(loss, ".3g") if math.isfinite(loss) else f"✕ {loss}")


def test_an_unknown_run_answers_404_with_a_reason():
    code, body, _ = get(live_api.API_PREFIX + "r9-doesnotexist")
    assert code == 404 and "no live run" in body["error"]


def test_copies_are_stamped_in_order_so_the_page_keeps_the_newest():
    runner = get_manager().start(Config(steps=10, hidden_sizes=(8,)))
    assert runner.wait(timeout=60)
    stamps = [live_status.status_of(runner)["t"] for _ in range(3)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


def _compare_page():
    from components import live_status
    from training.config import Config
    from training.manager import get_manager

    runner = get_manager().start([Config(steps=5, hidden_sizes=(8,)), Config(steps=5, hidden_sizes=(8,),
                                                                            clip="norm")], labels=["A", "B"])
    runner.wait(timeout=60)
    live_status.status_line(runner)


def test_the_element_gets_every_run_its_title_colour_and_the_route_to_poll():
    at = AppTest.from_function(_compare_page).run(timeout=60)
    assert not at.exception
    data = element_status(at)
    runs = data["status"]["runs"]
    assert [r["title"] for r in runs] == ["A", "B"] and runs[0]["color"] != runs[1]["color"]
    assert "clip ‖g‖ ≤ 1" in runs[1]["detail"] and "clipping off" in runs[0]["detail"]
    assert data["url"].startswith(live_api.API_PREFIX + "r") and data["every_ms"] == 250


def test_the_chart_route_answers_the_figure_a_rerun_would_draw():
    from components import live_figures as LF

    first = get_manager().start(Config(steps=30, hidden_sizes=(16,)))
    earlier = get_manager().start(Config(steps=20, hidden_sizes=(16,), clip="norm"))
    assert first.wait(timeout=60) and earlier.wait(timeout=60)
    snap, other = first.snapshot(), earlier.snapshot()
    for key in LF.OVERLAY_KEYS + LF.DETAIL_KEYS + ("chart_theory",):
        code, body, headers = get(live_api.chart_url(key, [snap.id]))
        assert code == 200 and headers["cache-control"] == "no-store"
        assert body["figure"] == json.loads(LF.figure(key, [snap]).to_json()), key
        assert body["cursor"] == LF.cursor(key, [snap]) and "reset" not in body
    code, body, _ = get(live_api.chart_url("chart_loss", [snap.id], [other.id]))
    both = [snap, LF.as_overlay(other)]
    assert body["figure"] == json.loads(LF.figure("chart_loss", both).to_json())
    assert body["cursor"] == {"after": [29, 19], "view": LF.view_of("chart_loss", both)}
    assert f"{LF.short(other.id)} {other.label} loss" in {t.get("name") for t in body["figure"]["data"]}


def test_the_chart_route_names_what_it_does_not_know():
    runner = get_manager().start(Config(steps=5, hidden_sizes=(8,)))
    assert runner.wait(timeout=60)
    code, body, _ = get(live_api.chart_url("chart_nope", [runner.id]))
    assert code == 404 and "chart_loss" in body["error"]
    code, body, _ = get(live_api.chart_url("chart_loss", ["r9-gone"]))
    assert code == 404 and "no such run" in body["error"]


def test_routes_and_urls_follow_the_base_url_path(monkeypatch):
    monkeypatch.setattr(plot.st, "get_option", lambda name: "/lab/" if name == "server.baseUrlPath" else None)
    assert [r.path for r in live_api.routes()] == ["/lab/api/live/{run_id}", "/lab/api/chart/{key}",
                                                   "/lab/api/charts", "/lab/api/map/{job_id}"]
    assert live_api.chart_url("chart_loss", ["r1-a"], ["r2-b"]) == "/lab/api/chart/chart_loss?runs=r1-a&extra=r2-b"


def test_charts_fetch_from_the_route_while_the_run_is_alive_and_not_after():
    from components import live
    from components import live_figures as LF

    runner = get_manager().start(Config(steps=100_000, hidden_sizes=(8,)))
    try:
        snap = runner.snapshot()
        source = live._sources(runner, [snap], [], 6.0)
        assert source("chart_loss") == plot.Source(live_api.chart_url("chart_loss", [runner.id]), live.STREAM_S,
                                                   LF.cursor("chart_loss", [snap]), live_api.charts_url())
        # redrawn whole, on its own period, and alone: not in the one poll of the charts that stream
        assert source("chart_theory").every_s == 6.0 and source("chart_theory").batch is None
    finally:
        runner.stop(timeout=5)
    assert not runner.alive and live._sources(runner, [snap], [], 6.0) is None


def test_an_ended_run_is_reported_ended_even_while_its_thread_winds_down(monkeypatch):
    """The route and the page wait for the thread of a runner whose runs have all ended: the status line then
    asks for one rerun, which draws the banner and the buttons together."""
    runner = get_manager().start(from_preset("watch it explode", steps=300))
    assert runner.wait(timeout=60)
    waited = []
    monkeypatch.setattr(type(runner), "alive", property(lambda r: not waited))  # the thread still winding down
    monkeypatch.setattr(runner, "wait", lambda timeout=None: waited.append(timeout) or True)
    status = live_status.status_of(runner)
    assert waited == [live_status.ENDING_S] and status["alive"] is False
    assert status["runs"][0]["state"] == "exploded"
