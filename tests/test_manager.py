"""The run manager (training/manager.py): the cap on running runs, pausing the runs nobody watches and resuming
them on a touch, stopping the ones left paused, and building a runner outside its lock."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.apptest_helpers import wait_until
from training import manager as M
from training.config import Config
from training.manager import CapacityError, RunManager
from training.runner import RUNNING, EndedTrainer, Runner, live_threads
from training.store import Store

TINY = Config(hidden_sizes=(16,), dataset="gaussian", batch_size=8, steps=200, probe_every=1000)
FOREVER = TINY.replace(steps=10_000_000)


def test_the_cap_refuses_a_start_counting_the_slots_without_naming_runs_and_frees_one_on_stop():
    m = RunManager(max_running=2, idle_pause_s=0)
    try:
        a, b = m.start(FOREVER), m.start(FOREVER)
        with pytest.raises(CapacityError) as e:
            m.start(FOREVER)
        msg = str(e.value)
        # Shown to whoever pressed Start: another session's run id would let them read that run.
        assert "every training slot is in use (2 of 2)" in msg and a.id not in msg and b.id not in msg
        assert a.stop()
        c = m.start(FOREVER)
        assert c.alive
    finally:
        assert m.shutdown()


def test_a_sweep_holds_its_slots_under_the_cap_and_stops_with_the_manager(monkeypatch):
    from training import mapjob
    from training import sweep as SW

    monkeypatch.setattr(SW, "max_workers", lambda: (3, "3 CPU cores"))
    # A local sweep takes the free slots, up to one worker per core; serial and Ray hold one.
    assert [mapjob.sweep_slots("local", free) for free in (0, 1, 2, 5)] == [0, 1, 2, 3]
    assert mapjob.sweep_slots("serial", 5) == mapjob.sweep_slots("ray", 5) == 1
    m = RunManager(max_running=2, idle_pause_s=0)
    try:
        runner = m.start(FOREVER)
        long_sweep = SW.Sweep(TINY, "lr=1e-4:1e-1:20", "depth=1,2,3,4", steps=50)  # 80 short cells
        job = m.start_sweep(long_sweep, "serial")
        assert job.slots == 1 and m.sweep(job.id) is job and job.alive
        assert job.thread in live_threads()  # the end-of-suite check sees it
        with pytest.raises(CapacityError, match=r"\(2 of 2\)"):
            m.start(FOREVER)
        with pytest.raises(CapacityError):
            m.start_sweep(SW.Sweep(TINY, "lr=1e-3,1e-2", "depth=1,2", steps=5), "serial")
        m.stop_all(timeout=10.0)
        assert not job.alive and not job.thread.is_alive() and long_sweep.cancelled and not runner.alive
        assert len(job.snapshot()) < 80 and job.saved is not None
        assert m.start(FOREVER).alive  # its slot is free again
    finally:
        assert m.shutdown()


def test_an_unwatched_run_pauses_and_a_touch_resumes_it():
    m = RunManager(max_running=2, idle_pause_s=0.3)
    try:
        runner = m.start(FOREVER)
        rid = runner.id
        t0 = time.monotonic()
        wait_until(lambda: runner.paused, 5, "the idle pause")
        print(f"idle pause landed {time.monotonic() - t0:.2f} s after the start (idle_pause_s=0.3)")
        assert m.idle_paused(rid) and runner.runs[0].status == "paused"
        assert runner.runs[0].events[-1]["kind"] == "idle_pause"
        assert m.touch(rid) is True
        wait_until(lambda: not runner.paused, 5, "the resume")
        assert runner.runs[0].status == RUNNING and not m.idle_paused(rid)
        # A run a person paused is never resumed by a touch.
        m.pause(rid)
        wait_until(lambda: runner.paused, 5, "the pause")
        # A run started now and never watched is idle-paused by a watchdog round that saw this one unwatched longer.
        other = m.start(FOREVER)
        wait_until(lambda: m.idle_paused(other.id), 5, "a watchdog round past idle_pause_s")
        assert m.touch(rid) is False and runner.paused and not m.idle_paused(rid)
        assert m.touch("no such run") is False
    finally:
        assert m.shutdown()


def test_a_touch_does_not_resume_past_the_cap_and_resume_counts_the_slots():
    m = RunManager(max_running=1, idle_pause_s=0.2)
    try:
        idle = m.start(FOREVER)
        rid = idle.id
        wait_until(lambda: m.idle_paused(rid) and idle.paused, 5, "the idle pause")
        other = m.start(FOREVER)  # the paused run freed its slot
        m.touch(other.id)
        assert m.touch(rid) is False and m.idle_paused(rid)
        with pytest.raises(CapacityError, match=r"every training slot is in use \(1 of 1\)") as e:
            m.resume(rid)
        assert other.id not in str(e.value)
    finally:
        assert m.shutdown()


def test_the_watchdog_and_writer_threads_end_with_the_manager(tmp_path):
    others = set(live_threads())  # the app's manager: its watchdog ends up to 5 s after that manager's last run
    m = RunManager(store=Store(tmp_path / "data"), idle_pause_s=60)
    m.start(FOREVER)
    names = {t.name for t in live_threads() if t not in others}
    assert {"run-watchdog", "store-writer"} <= names
    assert m.shutdown()
    mine = [t for t in live_threads() if t not in others
            and (t.name in ("run-watchdog", "store-writer") or t.name.startswith("train-"))]
    assert not mine, [t.name for t in mine]


def test_a_paused_run_nobody_watches_is_stopped_in_the_end_and_frees_its_model():
    """A tab closed on a paused run left its model in memory for good; a watched paused run stays."""
    m = RunManager(idle_pause_s=0.2, idle_stop_s=1.0)
    try:
        left, watched = m.start(FOREVER), m.start(FOREVER)
        wid = watched.id
        m.pause(wid)

        def left_ended() -> bool:
            m.touch(wid)  # the other paused run is watched all along
            return not left.alive

        wait_until(left_ended, 30, "the unwatched paused run to stop")
        assert left.runs[0].status == "stopped"
        kinds = [e["kind"] for e in left.runs[0].events]
        assert kinds[-2:] == ["idle_pause", "idle_stop"] and isinstance(left.runs[0].trainer, EndedTrainer)
        assert watched.alive and watched.paused and not isinstance(watched.runs[0].trainer, EndedTrainer)
    finally:
        assert m.shutdown()


# Building: a model at the parameter cap took 16-22 s to build while start() held the lock every route takes.
def test_a_slow_build_holds_no_lock_and_keeps_its_slot(monkeypatch):
    release, building = threading.Event(), threading.Event()

    class SlowRunner(Runner):
        def __init__(self, *a, **k):
            building.set()
            release.wait(30)
            super().__init__(*a, **k)

    m = RunManager(max_running=1, idle_pause_s=0)
    monkeypatch.setattr(M, "Runner", SlowRunner)
    with ThreadPoolExecutor(2) as pool:
        started = pool.submit(m.start, FOREVER)
        try:
            assert building.wait(10)
            looked_up = pool.submit(lambda: (m.get("r-nothing"), m.runners(), m.touch("r-nothing")))
            assert looked_up.result(timeout=2) == (None, [], False)  # not blocked by the build
            with pytest.raises(CapacityError):  # the build holds the only slot
                m.start(FOREVER, paused=False)
        finally:
            release.set()
        runner = started.result(timeout=30)
    try:
        assert runner.alive and m.get(runner.id) is runner
    finally:
        assert m.shutdown()


def test_a_failed_build_gives_its_slot_back(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("out of memory")

    m = RunManager(max_running=1, idle_pause_s=0)
    real = M.Runner
    monkeypatch.setattr(M, "Runner", broken)
    with pytest.raises(RuntimeError):
        m.start(FOREVER)
    monkeypatch.setattr(M, "Runner", real)
    try:
        assert m.start(FOREVER).alive
    finally:
        assert m.shutdown()


def test_a_run_is_found_by_its_id_or_its_comparison_partners_and_listed_in_start_order():
    m = RunManager(max_running=2, idle_pause_s=0)
    try:
        first = m.start(FOREVER, paused=True)
        pair = m.start([FOREVER, FOREVER.replace(lr=0.02)], labels=["A", "B"], paused=True)
        assert m.get(first.id) is first and m.get(pair.id) is pair
        assert m.get("r-nothing") is None
        assert m.runners() == [first, pair]
        # Run B of a comparison answers to a resume or a pause by its own id; get() knows runners by their first id.
        assert m.get(pair.runs[1].id) is None
        m.resume(pair.runs[1].id)
        wait_until(lambda: pair.runs[1].status == RUNNING, 5, "the pair resumed through run B's id")
        m.pause(pair.runs[1].id)
        wait_until(lambda: pair.runs[0].status == "paused", 5, "the pair paused through run B's id")
        with pytest.raises(KeyError, match="no live run"):
            m.pause("r-nothing")
    finally:
        assert m.shutdown()


def test_a_paused_start_takes_no_slot_and_running_lists_only_the_runs_that_train():
    m = RunManager(max_running=1, idle_pause_s=0)
    try:
        waiting = m.start(FOREVER, paused=True)
        going = m.start(FOREVER)
        assert m.running() == [going]
        with pytest.raises(CapacityError, match=r"\(1 of 1\)"):
            m.resume(waiting.id)  # the one slot is taken
        assert going.stop(5)
        m.resume(waiting.id)
        wait_until(lambda: m.running() == [waiting], 5, "the resumed run to count as running")
    finally:
        assert m.shutdown()


def test_a_touch_keeps_a_run_from_pausing():
    """Watched every 50 ms with idle_pause_s=0.5, a run goes on training through a dozen watchdog rounds."""
    m = RunManager(idle_pause_s=0.5)
    try:
        runner = m.start(FOREVER)
        rid = runner.id
        t0 = time.monotonic()

        def watched_long_enough() -> bool:
            assert m.touch(rid) is False and not runner.paused  # nothing to resume, nothing paused
            return time.monotonic() - t0 > 1.5

        wait_until(watched_long_enough, 5, "1.5 s of watching")
        assert not m.idle_paused(rid) and runner.runs[0].status == RUNNING
    finally:
        assert m.shutdown()


def test_ended_runs_beyond_the_count_are_dropped_oldest_first():
    m = RunManager(idle_pause_s=0, keep_finished=2)
    try:
        ended = []
        for _ in range(3):
            ended.append(m.start(TINY.replace(steps=3)))
            assert ended[-1].wait(30)
        last = m.start(FOREVER, paused=True)  # pruning happens at a start
        assert m.runners() == [*ended[1:], last] and m.get(ended[0].id) is None
    finally:
        assert m.shutdown()
