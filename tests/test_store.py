"""The run store: every step of every run saved off the training thread, readable after a restart."""

from __future__ import annotations

import json
import sqlite3
import time

import numpy as np
import pandas as pd
import pytest

from tests.apptest_helpers import wait_until
from training import cli
from training.config import Config, from_dict
from training.manager import RunManager
from training.store import INTERRUPTED, Store, StoreError, thin

TINY = Config(hidden_sizes=(16,), dataset="gaussian", batch_size=8, steps=200, probe_every=1000)
EXPLODES = TINY.replace(lr=10.0)  # non-finite around step 30


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def manager(store):
    m = RunManager(max_running=4, store=store, idle_pause_s=0)
    yield m
    assert m.shutdown()


def _train(manager: RunManager, cfg: Config, label: str = ""):
    runner = manager.start(cfg, labels=[label] if label else None)
    assert runner.wait(60)
    assert manager.store.flush()
    return runner.runs[0]


def test_every_step_and_every_column_is_stored_and_matches_a_direct_run(manager, store):
    run = _train(manager, TINY, "tiny")
    stored = store.load_run(run.id)
    assert stored.status == "finished" and from_dict(stored.config) == TINY
    assert stored.columns == run.trainer.columns
    np.testing.assert_array_equal(stored.steps, np.arange(TINY.steps))
    _, rows, _, _ = cli.train_rows(TINY, progress=False)  # the same seed on a plain loop: the reference
    np.testing.assert_allclose(stored.rows, np.array(rows)[:, 1:], rtol=1e-6, equal_nan=True)
    info = store.run_info(run.id)
    assert (info["label"], info["steps"], info["status"]) == ("tiny", TINY.steps, "finished")
    assert info["created"] <= info["updated"] and info["last_loss"] == pytest.approx(stored.rows[-1, 0])


def test_events_and_live_changes_are_stored_and_nan_survives(manager, store):
    runner = manager.start(EXPLODES, paused=True)
    runner.set_lr(5.0)
    runner.step_once(3)
    runner.resume()
    assert runner.wait(60)
    store.flush()
    stored = store.load_run(runner.id)
    kinds = [e["kind"] for e in stored.events]
    assert stored.status == "exploded" and kinds[0] == "config_change" and kinds[-1] == "explosion"
    assert stored.events[0]["new"] == 5.0
    last = stored.rows[-1]
    assert not np.isfinite(last).all(), "the non-finite row is stored as it was, not dropped or nulled"
    assert np.isnan(last[stored.columns.index("update_ratio/head.weight")])


def test_sqlite_is_only_touched_by_the_writer_thread(manager, store, monkeypatch):
    import threading

    threads = set()
    real = Store._write

    def spy(self, conn, *batches):
        threads.add(threading.current_thread().name)
        return real(self, conn, *batches)

    monkeypatch.setattr(Store, "_write", spy)
    _train(manager, TINY.replace(steps=50))
    assert threads == {"store-writer"}


def test_rows_reach_the_database_within_half_a_second(manager, store):
    runner = manager.start(TINY.replace(steps=10**6), paused=True)
    runner.step_once(5)
    t0 = time.perf_counter()
    wait_until(lambda: _stored_steps(store, runner.id) >= 5, 2.0, "5 rows in the database", every=0.01)
    latency = time.perf_counter() - t0
    print(f"5 steps reached the database {latency * 1000:.0f} ms after step_once")
    assert latency < 1.0  # the writer flushes every 0.25 s; the margin is for a loaded CI machine


def _stored_steps(store: Store, run_id: str) -> int:
    try:
        return store.run_info(run_id)["steps"]
    except KeyError:
        return 0


def test_a_restart_lists_past_runs_which_open_and_export(tmp_path):
    first = RunManager(store=Store(tmp_path / "data"), idle_pause_s=0)
    run = _train(first, TINY.replace(steps=30), "before restart")
    assert first.shutdown()
    # A new process: a fresh store object and manager on the same folder.
    again = RunManager(store=Store(tmp_path / "data"), idle_pause_s=0)
    (info,) = again.past_runs()
    assert (info["id"], info["label"], info["status"], info["steps"], info["live"]) == (
        run.id, "before restart", "finished", 30, False)
    assert len(again.open_run(run.id).steps) == 30
    df = again.store.to_dataframe(run.id)
    assert list(df.columns) == ["step", *run.trainer.columns] and df["clipped"].dtype == bool
    sidecar = again.store.export(run.id, tmp_path / "run.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "run.parquet"), df)
    assert json.loads(sidecar.read_text())["status"] == "finished"
    again.store.export(run.id, tmp_path / "run.csv")
    assert len(pd.read_csv(tmp_path / "run.csv")) == 30
    assert again.shutdown()


def test_a_finished_run_can_be_deleted_but_not_a_live_one(manager, store):
    run = _train(manager, TINY.replace(steps=10))
    live = manager.start(TINY.replace(steps=10**6))
    with pytest.raises(ValueError, match="still being saved"):
        store.delete_run(live.id)
    assert store.delete_run(run.id) is True and store.delete_run(run.id) is False
    assert store.flush()
    assert [r["id"] for r in store.list_runs()] == [live.id]
    with pytest.raises(KeyError):
        store.load_run(run.id)


def test_overlay_series_of_several_runs(manager, store):
    a, b = _train(manager, TINY.replace(steps=40)), _train(manager, TINY.replace(steps=60, seed=1))
    s = store.series([a.id, b.id], "loss", max_points=None)
    assert len(s[a.id]["step"]) == 40 and len(s[b.id]["value"]) == 60
    with pytest.raises(KeyError):
        store.series([a.id], "no such column")


def test_thinning_keeps_a_one_step_spike():
    steps = np.arange(10_000)
    values = np.ones(10_000)
    values[5_001] = 1e9
    values[7_000:7_010] = np.nan
    t = thin(steps, values, 100)
    assert len(t["step"]) == 100 and t["step"][-1] == 9_999
    assert t["hi"].max() == 1e9 and np.isfinite(t["lo"]).all()  # NaN-aware: a NaN never hides the range


def test_unknown_run_and_unusable_folder_are_refused(store, tmp_path):
    with pytest.raises(KeyError, match="no stored run"):
        store.load_run("nope")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open the run store"):
        Store(blocker / "data")


def test_a_run_whose_process_died_reads_as_interrupted(tmp_path):
    s = Store(tmp_path / "data", stale_s=0.0)
    with sqlite3.connect(s.path) as conn:
        conn.execute("INSERT INTO runs (id, label, config_json, status, created, updated, columns_json) "
                     "VALUES ('r9', 'x', '{}', 'running', 1, 1, '[]')")
    assert s.list_runs()[0]["status"] == INTERRUPTED


def test_without_a_store_nothing_is_buffered():
    from training.runner import Runner

    runner = Runner(TINY.replace(steps=20))
    runner.start()
    assert runner.wait(30)
    assert runner.runs[0].observers == []  # no store: nothing observes, so nothing buffers the steps


def test_cli_run_saves_to_the_store_and_runs_lists_it(tmp_path, capsys):
    data = tmp_path / "data"
    code = cli.main(["run", "--hidden-sizes", "16", "--dataset", "gaussian", "--batch-size", "8", "--steps", "25",
                     "--quiet", "--store", str(data), "--out", str(tmp_path / "o.csv")])
    assert code == 0
    assert len(pd.read_csv(tmp_path / "o.csv")) == 25
    assert cli.main(["runs", "--store", str(data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["id", "status"] and "finished" in out[1] and " 25 " in out[1]


def test_get_manager_saves_under_gel_data_dir_and_still_trains_when_it_cannot(tmp_path, monkeypatch):
    import training.manager as M

    monkeypatch.setattr(M, "_manager", None)
    monkeypatch.setenv("GEL_DATA_DIR", str(tmp_path / "d"))
    m = M.get_manager()
    assert M.get_manager() is m and m.store.path == tmp_path / "d" / "runs.sqlite3" and m.store_error is None
    assert m.shutdown()
    monkeypatch.setattr(M, "_manager", None)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("GEL_DATA_DIR", str(blocker / "d"))
    m = M.get_manager()
    assert m.store is None and m.store_error.startswith("runs are not being saved: cannot open the run store")
    assert m.past_runs() == []


def test_a_saved_map_keeps_its_cells_exactly_and_its_metadata_as_strict_json(store, manager):
    """Maps live in the run store's own file and connections, beside runs being written at the same time."""
    run = _train(manager, TINY)
    cells = [{"x": 0.1, "y": 2, "seed": 0, "outcome": "exploded", "final_loss": float("nan"),
              "max_grad_norm": float("inf")}]
    meta = {"x": {"spec": "lr=0.1"}, "y": {"spec": "depth=2"}, "complete": False, "seconds": np.float64("nan"),
            "steps": np.int64(5)}
    sid = store.save_sweep(cells, meta)
    [entry] = store.list_sweeps()
    assert entry == {"id": sid, "label": "lr=0.1 x depth=2", "created": entry["created"], "x": "lr=0.1",
                     "y": "depth=2", "cells": 1, "complete": False}
    got, meta2 = store.load_sweep(sid)
    assert np.isnan(got[0]["final_loss"]) and got[0]["max_grad_norm"] == float("inf")  # a cell's NaN survives
    assert meta2["seconds"] is None and meta2["steps"] == 5  # the metadata is strict JSON, numpy made plain
    with sqlite3.connect(store.path) as conn:
        text = conn.execute("SELECT meta_json FROM sweeps WHERE id = ?", (sid,)).fetchone()[0]
    conn.close()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the saved metadata"))
    assert store.list_runs()[0]["id"] == run.id and store.integrity() == "ok"
    with pytest.raises(KeyError, match="no stored sweep"):
        store.load_sweep("nope")
    assert store.delete_sweep(sid) and not store.delete_sweep(sid) and store.list_sweeps() == []
