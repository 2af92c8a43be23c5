"""The saved-runs page: stored runs listed (also from another process), overlaid, opened, exported, deleted;
an unusable store is a warning. Each test gets its own data folder and a fresh process-wide RunManager."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

import training.manager as M
from components import charts as C
from components import page_saved as P
from components import saved_charts as SC
from training.config import Config
from training.store import Store

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TINY = Config(hidden_sizes=(16,), dataset="gaussian", batch_size=8, steps=60, probe_every=1000)
EXPLODES = TINY.replace(lr=10.0)  # non-finite around step 30


def _saved_page():
    from components import page_saved

    page_saved.render()




def _train(cfg: Config, label: str) -> str:
    manager = M.get_manager()
    runner = manager.start(cfg, labels=[label])
    assert runner.wait(60)
    assert manager.store.flush()
    return runner.id


def _page() -> AppTest:
    at = AppTest.from_function(_saved_page, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def _table(at) -> pd.DataFrame:
    return at.dataframe[0].value


def _trace_names(at, i: int) -> set[str]:
    return {t.get("name") for t in json.loads(at.get("plotly_chart")[i].proto.spec)["data"]}


def test_a_trained_run_is_listed_overlaid_and_opened(data_dir):
    rid = _train(EXPLODES, "explodes")
    at = _page()
    row = _table(at).iloc[0]
    assert (row["run"], row["label"], row["status"], row["model"], row["clip"]) == (
        rid, "explodes", "exploded", "mlp", "clipping off")  # registry.describe_clip, as every view words it
    assert at.multiselect(key="w_saved_pick").value == [rid]  # the newest run is overlaid by default
    assert "loss" in _trace_names(at, 0)
    # The last step's gradient norm is inf: a marker, not a dropped point.
    assert {"pre-clip", "post-clip", C.NON_FINITE_NAME} <= _trace_names(at, 1)
    assert at.selectbox(key="w_saved_open").value == rid
    assert "explosion" in at.dataframe[1].value["kind"].tolist()  # the events of the opened run
    link = next(b for b in at.get("link_button") if b.proto.label == "Open in the lab")
    assert "lr=10" in link.proto.url and "run=" not in link.proto.url  # finished: settings only


def test_two_runs_overlay_with_one_line_each(data_dir):
    a, b = _train(TINY, "calm"), _train(EXPLODES, "explodes")
    at = _page()
    at.multiselect(key="w_saved_pick").set_value([a, b]).run()
    assert not at.exception
    names = _trace_names(at, 0)
    assert any(n.endswith("loss") and "calm" in n for n in names) and any("explodes" in n for n in names)


def test_runs_from_another_process_are_listed_interrupted_too(data_dir):
    subprocess.run([sys.executable, "-m", "training", "run", "--store", str(data_dir), "--steps", "20", "--quiet",
                    "--hidden-sizes", "16", "--dataset", "gaussian", "--batch-size", "8"],
                   check=True, cwd=Path(APP).parent, timeout=120)
    with sqlite3.connect(Store(data_dir).path) as conn:  # a run whose server died mid-training
        conn.execute("INSERT INTO runs (id, label, config_json, status, created, updated, columns_json) "
                     "VALUES ('r9-dead', 'old', '{}', 'running', 1, 1, '[]')")
    at = _page()
    table = _table(at)
    assert table["status"].tolist() == ["finished", "interrupted"]
    assert table["steps"].tolist() == [20, 0]
    at.selectbox(key="w_saved_open").set_value("r9-dead").run()
    assert not at.exception


def test_export_returns_step_and_every_stored_column(data_dir):
    rid = _train(TINY.replace(steps=30), "export")
    store = M.get_manager().store
    csv = pd.read_csv(io.BytesIO(P.export_bytes(store, rid, "csv")))
    parquet = pd.read_parquet(io.BytesIO(P.export_bytes(store, rid, "parquet")))
    columns = store.load_run(rid).columns
    assert list(csv.columns) == list(parquet.columns) == ["step", *columns] and len(csv) == 30
    pd.testing.assert_frame_equal(parquet, store.to_dataframe(rid))
    assert P._export_or_message(store, "no-such-run", "csv").startswith(b"export failed")
    at = _page()
    assert {b.proto.label for b in at.get("download_button")} == {"Download CSV", "Download PARQUET"}


def test_delete_asks_first_then_forgets_the_run(data_dir):
    rid = _train(TINY.replace(steps=20), "doomed")
    at = _page()
    at.button(key="btn_saved_delete").click().run()
    assert M.get_manager().store.list_runs()  # only asked
    at.button(key="btn_saved_delete_yes").click().run()
    assert not at.exception
    assert M.get_manager().store.list_runs() == []
    assert any(f"Deleted run {rid}" in s.value for s in at.success)


def test_a_live_run_links_with_its_id_and_cannot_be_deleted(data_dir):
    manager = M.get_manager()
    runner = manager.start(TINY.replace(steps=100_000), labels=["long"])
    try:
        rid = runner.id
        assert manager.store.flush() and manager.store.list_runs()
        at = _page()
        link = next(b for b in at.get("link_button") if b.proto.label == "Open in the lab")
        assert f"run={rid}" in link.proto.url
        assert at.button(key="btn_saved_delete").disabled
    finally:
        runner.stop(timeout=5.0)


def test_an_unusable_store_is_a_warning_not_an_exception(tmp_path, monkeypatch, data_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("GEL_DATA_DIR", str(blocker / "d"))
    at = _page()
    assert any("runs are not being saved" in w.value for w in at.warning)


def test_a_store_that_breaks_after_opening_is_a_warning(data_dir):
    _train(TINY.replace(steps=20), "x")
    store = M.get_manager().store
    assert store.close()  # its writer's last checkpoint would rewrite the file
    for f in store.path.parent.iterdir():
        f.unlink()
    store.path.mkdir()  # a folder where the database was: every read fails
    at = _page()
    assert any("Cannot list the saved runs" in w.value for w in at.warning)


def test_the_app_routes_to_the_page():
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception


# The chart helpers, on plain data.
def _series(values, steps=None, lo=None, hi=None) -> dict:
    v = np.asarray(values, dtype=float)
    s = np.arange(len(v)) if steps is None else np.asarray(steps)
    return {"step": s, "value": v, "lo": v if lo is None else np.asarray(lo), "hi": v if hi is None else np.asarray(hi)}


def test_stored_view_marks_non_finite_values_and_keeps_the_finite_line():
    view = SC.stored_view("r", {"clip": "norm", "clip_threshold": 2.0},
                          {"loss": _series([1.0, 2.0, np.nan]), "grad_norm_pre_clip": _series([1.0, 5.0, np.inf]),
                           "grad_norm_post_clip": _series([1.0, 2.0, np.nan])})
    loss = SC.loss_overlay([view])
    bad = next(t for t in loss.data if t.name == C.NON_FINITE_NAME)
    assert list(bad.x) == [2]
    grad = SC.grad_norm_overlay([view])
    assert list(next(t for t in grad.data if t.name == C.NON_FINITE_NAME).x) == [2, 2]
    assert list(next(t for t in grad.data if t.name == "clip threshold 2").y) == [2.0, 2.0]


def test_a_thinned_spike_stays_in_the_envelope():
    spike = _series([1.0, 1.0], steps=[10, 20], lo=[0.5, 0.5], hi=[1e6, 1.0])
    view = SC.stored_view("r", {}, {"loss": spike})
    fig = SC.loss_overlay([view])
    assert max(np.nanmax(np.asarray(t.y, dtype=float)) for t in fig.data if t.y is not None) == 1e6


def test_columns_thinned_differently_are_aligned_on_the_first():
    view = SC.stored_view("r", {}, {"loss": _series([1.0, 2.0, 3.0], steps=[0, 1, 2]),
                                    "grad_norm_pre_clip": _series([5.0], steps=[2])})
    assert np.isnan(view.series("grad_norm_pre_clip")[1][:2]).all() and view.series("grad_norm_pre_clip")[1][2] == 5


def test_an_outdated_stored_config_falls_back_to_the_defaults():
    assert SC.stored_config({"activation": "no-such-thing"}) == Config()
    assert SC.stored_config({"lr": 0.5}).lr == 0.5


def test_the_overlay_draws_what_store_series_returns(data_dir):
    rid = _train(EXPLODES, "explodes")
    store = M.get_manager().store
    view = P._view(store, store.run_info(rid), with_label=False)
    for col in SC.COLUMNS:
        want = store.series([rid], col, max_points=P.MAX_POINTS)[rid]
        np.testing.assert_array_equal(view.series(col)[1], want["value"])
        np.testing.assert_array_equal(view.series(col, "hi")[1], want["hi"])


def test_a_row_that_cannot_be_read_is_named_and_the_others_are_listed(data_dir):
    rid = _train(TINY.replace(steps=20), "good")
    with sqlite3.connect(M.get_manager().store.path) as conn:
        conn.execute("INSERT INTO runs (id, label, config_json, status, created, updated, columns_json) "
                     "VALUES ('bad-row', 'x', '{nope', 'finished', 2e9, 2e9, '[]')")
    conn.close()
    at = _page()
    assert next(d.value for d in at.dataframe if "label" in d.value.columns)["run"].tolist() == [rid]
    assert any("1 saved run cannot be read and is not listed" in w.value for w in at.warning)
    bad = next(d.value for d in at.dataframe if "why" in d.value.columns)
    assert bad["run"].tolist() == ["bad-row"] and "config_json is not valid JSON" in bad["why"][0]


def test_rows_lost_from_a_garbled_log_are_reported_on_the_page(data_dir):
    store = Store(data_dir)
    with sqlite3.connect(store.path) as conn:  # a run that recorded 50 steps of which 20 are stored
        conn.execute("INSERT INTO runs (id, label, config_json, status, created, updated, columns_json, n_steps) "
                     "VALUES ('r-short', 'x', '{}', 'finished', 1, 1, '[\"loss\"]', 50)")
        conn.executemany("INSERT INTO metrics VALUES ('r-short', ?, ?)",
                         [(i, np.float64(1.0).tobytes()) for i in range(20)])
    conn.close()
    at = _page()
    assert any("found lost or damaged data" in w.value for w in at.warning)
    (details,) = at.code
    assert "run 'r-short' holds 20 of the 50 steps it recorded" in details.value
    assert "files as found are kept in" in details.value
    assert _table(at)["run"].tolist() == ["r-short"]  # still listed: what it has is readable


def test_the_lab_says_when_store_writes_fail(data_dir):
    M.get_manager().store.error = "cannot write to the run store at X: disk I/O error"
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception
    assert any("cannot write to the run store" in w.value for w in at.warning)
