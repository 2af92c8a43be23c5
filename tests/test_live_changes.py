"""Live setting changes close together make one marker: three arrow-key presses on the learning-rate slider are
one config_change event, from the first press's step and old value to the last one's new value, in the charts and
in the store alike."""

from __future__ import annotations

import time

import pytest

from tests.apptest_helpers import wait_until
from training import run as RU
from training import runner as RN
from training.config import Config
from training.runner import Runner
from training.store import Store

SMALL = {"hidden_sizes": (16,), "batch_size": 8, "device": "cpu", "steps": 10**6}


def changes(events):
    return [e for e in events if e["kind"] == "config_change"]


@pytest.fixture
def runner(runners):
    r = Runner(Config(lr=0.001, **SMALL))
    runners.append(r)
    r.start(paused=True)
    return r


def test_three_quick_lr_changes_are_one_marker_with_the_last_value(runner):
    runner.step_once(3)
    wait_until(lambda: runner.snapshot().step == 3, 20, "step 3")
    for lr in (0.002, 0.005, 0.01):
        runner.set_lr(lr)
    runner.step_once(2)
    wait_until(lambda: runner.snapshot().step == 5, 20, "step 5")
    (change,) = changes(runner.snapshot().events)
    assert (change["step"], change["old"], change["new"]) == (3, 0.001, 0.01)
    assert change["message"] == "lr 0.001 → 0.01"
    steps, lr = runner.snapshot().series("lr")
    assert set(lr[steps >= 3]) == {0.01}  # every press applied at once, only the marker is folded


def test_changes_further_apart_or_of_another_setting_stay_apart(runner, monkeypatch):
    monkeypatch.setattr(RU, "COALESCE_S", 0.05)
    runner.set_lr(0.002)
    runner.set_clip("norm", 1.0)  # another setting: its own marker
    runner.step_once(1)
    wait_until(lambda: runner.snapshot().step == 1, 20, "step 1")
    time.sleep(0.1)
    runner.set_lr(0.005)  # later than COALESCE_S: a marker of its own
    runner.step_once(1)
    wait_until(lambda: runner.snapshot().step == 2, 20, "step 2")
    assert [(e["field"], e["new"]) for e in changes(runner.snapshot().events)] == [
        ("lr", 0.002), ("clip", ["norm", 1.0, "2"]), ("lr", 0.005)]


def test_the_store_gets_the_folded_change_whether_or_not_it_saved_the_first(tmp_path):
    store = Store(tmp_path / "data")
    runner = Runner(Config(**SMALL))  # never started: the changes are recorded straight on the run
    store.attach(runner)
    run = runner.runs[0]
    words = RN._change_words["lr"]
    ev = {"step": 0, "kind": "config_change", "field": "lr", "old": 0.01}
    try:
        run.add_change({**ev, "new": 0.02, "message": words(0.01, 0.02)}, words)
        run.add_change({**ev, "new": 0.05, "message": words(0.01, 0.05)}, words)
        assert store.flush()
        assert [e["new"] for e in store.load_run(run.id).events] == [0.05]  # replaced before it was saved
        run.add_change({**ev, "new": 0.1, "message": words(0.01, 0.1)}, words)
        assert store.flush()
        # Saved already: the folded one follows it, and the last one wins.
        assert [e["new"] for e in store.load_run(run.id).events] == [0.05, 0.1]
        assert [e["new"] for e in changes(run.snapshot(history=False).events)] == [0.1]
    finally:
        runner.stop()
        assert store.close()


def test_a_live_change_after_the_event_cap_still_reaches_the_snapshot_controls_and_threshold(runner, monkeypatch):
    from components import charts as C
    from components.data import live_config

    monkeypatch.setattr(RU, "MAX_EVENTS", 5)
    for i in range(8):  # past the cap: the rest are dropped, the change below among them
        runner.runs[0].add_event({"step": 0, "kind": "note", "message": f"filler {i}"})
    runner.set_lr(0.05)
    runner.set_clip("norm", 0.5)
    runner.step_once(2)
    wait_until(lambda: runner.snapshot().step == 2, 10, "two steps")
    snap = runner.snapshot()
    assert len(snap.events) == 5 and not changes(snap.events)  # the change markers were dropped ...
    assert (snap.lr, snap.clip) == (0.05, ("norm", 0.5, "2"))  # ... the settings were not
    assert runner.snapshot(history=False).clip == ("norm", 0.5, "2")  # the status line's snapshot too
    cfg = live_config(snap)  # what the controls show on reattach and compare against
    assert (cfg.lr, cfg.clip, cfg.clip_threshold) == (0.05, "norm", 0.5)
    names = [t.name for t in C.grad_norm_figure([snap]).data]
    assert "clip threshold 0.5" in names
