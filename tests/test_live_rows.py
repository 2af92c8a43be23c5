"""The live chart route with the page's cursor (components/live_rows.py): only the rows after it, the markers and
event lines recorded with them, the whole figure again when the cursor's view is gone, and answers bounded
whatever the gap. Through the routes themselves (bench/asgi.py), as the page calls them."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import numpy as np
import pytest

from components import live_api, live_rows
from components import live_figures as LF
from tests.test_live_status import get
from training.config import Config, from_preset
from training.manager import get_manager

TINY = Config(hidden_sizes=(8,), dataset="gaussian", batch_size=8, probe_every=10)


def _finished(cfg: Config):
    runner = get_manager().start(cfg)
    assert runner.wait(60)
    return runner


def _ask(key: str, runs: list[str], after: list[int], view: str, extra: list[str] = ()):
    url = live_api.chart_url(key, runs, list(extra)) + f"&after={','.join(map(str, after))}&view={view}"
    code, body, _ = get(url)
    assert code == 200
    return body


def _uids(name: str) -> set[str]:
    """The uids a trace named ``name`` can have (live_figures.trace_uid: name, axes, type), the first of its kind."""
    return {LF.trace_uid(f"{name}|{x}|{y}|{kind}", 0) for x in ("x", "x2", "None") for y in ("y", "y2", "None")
            for kind in ("scatter", "heatmap", "bar")}


def _trace(body: dict, name: str) -> dict:
    return next(t for t in body["traces"] if t["uid"] in _uids(name))


@pytest.fixture(scope="module")
def run300():
    runner = _finished(TINY.replace(steps=300))
    return runner.id, runner.snapshot()


def test_rows_after_the_cursor_are_the_runs_own_numbers(run300):
    rid, snap = run300
    view = LF.view_of("chart_loss", [snap])
    body = _ask("chart_loss", [rid], [280], view)
    assert body["cursor"] == {"after": [299], "view": view} and "figure" not in body
    loss = _trace(body, "loss")
    steps, values = snap.series("loss")
    assert loss["x"] == list(range(281, 300)) and loss["uid"] == LF.trace_uid("loss|x|y|scatter", 0)
    np.testing.assert_allclose(loss["y"], values[steps > 280], rtol=1e-5)  # six significant digits
    acc = _trace(_ask("chart_loss", [rid], [240], view), "test accuracy")  # the test set every 50 steps
    evals = [p["step"] for p in snap.probes if p.get("test_accuracy") is not None and p["step"] > 240]
    assert acc["x"] == evals and len(evals) == 1
    # The gradient-norm chart: both lines, and the threshold line (norm clipping off here: none).
    grad = _ask("chart_grad", [rid], [290], LF.view_of("chart_grad", [snap]))
    assert {t["uid"] for t in grad["traces"]} == {_trace(grad, "pre-clip")["uid"], _trace(grad, "post-clip")["uid"]}
    assert all(t["x"] == list(range(291, 300)) for t in grad["traces"])


def test_a_cursor_at_the_newest_step_gets_nothing_but_the_cursor(run300):
    rid, snap = run300
    for key in LF.STREAM_KEYS + LF.NOW_KEYS:
        view = LF.view_of(key, [snap])
        after = LF.newest_step(key, snap)
        assert _ask(key, [rid], [after], view) == {"cursor": {"after": [after], "view": view}}, key


def test_per_layer_charts_stream_too(run300):
    rid, snap = run300
    heat = _ask("chart_heatmap", [rid], [295], LF.view_of("chart_heatmap", [snap]))["traces"][0]
    assert heat["x"] == [296, 297, 298, 299] and len(heat["z"]) == 2  # the two weight matrices, one column a step
    g = snap.view["hi"][:, snap.columns.index("grad_norm/blocks.0.fc.weight")]
    np.testing.assert_allclose(heat["z"][0], np.log10(g[-4:]), rtol=1e-5)
    weights = _ask("chart_weights", [rid], [298], LF.view_of("chart_weights", [snap]))["traces"]
    healthy = [t for t in weights if t["uid"] in _uids("healthy ≈ 1e-3")]
    assert [t["x"] for t in healthy] == [[299]]  # the reference line's end only
    flow = _ask("chart_flow", [rid], [200], LF.view_of("chart_flow", [snap]))
    assert flow["cursor"]["after"] == [299] and "(step 299)" in flow["replace"]["layout"]["title"]["text"]
    acts = _ask("chart_acts", [rid], [200], LF.view_of("chart_acts", [snap]))
    assert acts["cursor"]["after"] == [290] and "(step 290)" in acts["replace"]["layout"]["title"]["text"]


def test_another_view_or_no_cursor_gets_the_whole_figure(run300):
    rid, snap = run300
    body = _ask("chart_loss", [rid], [250], "stale-view")
    assert body["reset"] is True and body["figure"]["data"] and body["cursor"] == LF.cursor("chart_loss", [snap])
    code, body, _ = get(live_api.chart_url("chart_loss", [rid]) + "&after=oops&view=x")
    assert code == 200 and body["reset"] is True  # a cursor that is not steps: the whole figure, never a 500
    assert _ask("chart_loss", [rid], [-1], LF.view_of("chart_loss", [snap]))["reset"] is True  # held no step yet
    # A live change (a new threshold, a new learning rate) is a new view: rows would extend the old one.
    run = get_manager().find(rid)[0].runs[0]
    run.add_change({"step": 300, "kind": "config_change", "field": "lr", "old": 0.01, "new": 0.02},
                   lambda old, new: f"lr {old} → {new}")
    body = _ask("chart_loss", [rid], [250], LF.view_of("chart_loss", [snap]))
    assert body["reset"] is True and body["cursor"]["view"] != LF.view_of("chart_loss", [snap])


def test_the_rows_of_a_cursor_older_than_the_recent_window_have_folded_so_the_whole_figure_comes():
    runner = _finished(TINY.replace(steps=2600, probe_every=1000))
    snap = runner.snapshot()
    view = LF.view_of("chart_loss", [snap])
    assert _ask("chart_loss", [runner.id], [100], view)["reset"] is True
    # Just inside the window: every row is still there, and a line brings at most POLL_POINTS of them (the min
    # and max of each bucket and the last), however long the gap.
    first_recent = int(runner.runs[0].history.recent()[0][0])
    body = _ask("chart_loss", [runner.id], [first_recent], view)
    loss = _trace(body, "loss")
    assert len(loss["x"]) <= live_rows.POLL_POINTS + 1 and loss["x"][-1] == 2599
    steps, values = snap.series("loss")
    tail = values[steps > first_recent]
    assert max(loss["y"]) == pytest.approx(tail.max(), rel=1e-5)
    assert min(loss["y"]) == pytest.approx(tail.min(), rel=1e-5)


def test_the_explosion_arrives_with_its_row_marker_and_line():
    runner = _finished(from_preset("watch it explode", steps=300))
    snap = runner.snapshot()
    boom = next(e["step"] for e in snap.events if e["kind"] == "explosion")
    body = _ask("chart_loss", [runner.id], [boom - 3], LF.view_of("chart_loss", [snap]))
    marker = _trace(body, "✕ non-finite")
    assert marker["x"] == [boom] and body["cursor"]["after"] == [boom]
    assert _trace(body, "loss")["y"][-1] is None  # a gap in the line, where the marker stands
    assert [s["x0"] for s in body["shapes"]] == [boom] and body["annotations"][0]["text"] == "✕ exploded"


def test_a_trace_uid_is_safe_in_a_css_selector_and_tells_traces_apart():
    # Plotly puts uids in selectors (a heatmap's image): '|', '#', spaces or '‖' there break its drawing.
    uids = [LF.trace_uid(base, n) for base in ("log10 ‖g‖|x|y|heatmap", "loss|x|y|scatter", "None|x|y|scatter")
            for n in (0, 1)]
    assert all(re.fullmatch(r"u[0-9a-f]{8}-\d+", u) for u in uids) and len(set(uids)) == len(uids)
    assert LF.trace_uid("loss|x|y|scatter", 0) == "u676f3447-0"  # FNV-1a, as live_stream.js computes it


def test_one_poll_answers_every_chart_in_the_order_asked(run300):
    rid, snap = run300
    keys = ["chart_loss", "chart_heatmap", "chart_flow"]
    specs = [live_api.chart_url(k, [rid]).split(live_api.CHART_PREFIX)[1]
             + f"&after=290&view={LF.view_of(k, [snap])}" for k in keys]
    code, body, _ = get(live_api.charts_url() + "?" + urlencode([("c", s) for s in specs]))
    assert code == 200 and body == [_ask(k, [rid], [290], LF.view_of(k, [snap])) for k in keys]
    code, body, _ = get(live_api.charts_url() + "?" + urlencode([("c", "chart_loss?runs=nosuchrun"),
                                                                   ("c", "chart_nope?runs=" + rid)]))
    assert code == 200 and [b["status"] for b in body] == [404, 404] and all(b["error"] for b in body)
    code, _, _ = get(live_api.charts_url() + "?" + urlencode([("c", specs[0])] * (live_api.MAX_CHARTS + 1)))
    assert code == 400


def test_compact_numbers_keep_six_digits_and_say_null_for_what_is_not_finite():
    out = live_rows.compact(np.array([1.23456789e-7, -2.5, 0.0, np.inf, np.nan, 123456789.0]))
    assert out == [1.23457e-07, -2.5, 0.0, None, None, 123457000.0]
    assert live_rows.compact(np.array([3, 4])) == [3, 4]
