"""The background runner: lifecycle, live changes, lockstep comparison, error capture."""

import threading
import time

import numpy as np
import pytest
import torch

from tests.apptest_helpers import wait_until
from training.config import Config, ConfigError, from_preset
from training.runner import ERROR, EXPLODED, FINISHED, PAUSED, RUNNING, STOPPED, Runner, RunObserver

SMALL = {"hidden_sizes": (32, 16), "batch_size": 16, "device": "cpu"}


def went_round(r: Runner) -> None:
    """Wait until the runner's thread has applied two commands, one after the other: a step it was about to take
    has been taken and recorded by then (a step is recorded before the loop looks at its commands again)."""
    for speed in (5.0, None):  # the speed control: no event, and no effect on a paused runner's single steps
        r.set_speed(speed)
        wait_until(lambda s=speed: r.steps_per_s == s, 5, "the runner's thread to apply a command")


def test_runs_to_the_end_and_history_matches_steps(runners):
    r = Runner(Config(**SMALL, steps=50))
    runners.append(r)
    r.start()
    assert r.wait(20)
    s = r.snapshot()
    assert s.status == FINISHED and s.step == 50
    assert s.view["step"].tolist() == list(range(50))
    assert np.isfinite(s.series("loss")[1]).all() and s.latest.step == 49


def test_pause_single_step_resume_and_stop_within_a_second(runners):
    r = Runner(Config(**SMALL, steps=10**6))
    runners.append(r)
    r.start(paused=True)
    went_round(r)
    assert r.snapshot().step == 0 and r.snapshot().status == PAUSED
    r.step_once(3)
    wait_until(lambda: r.snapshot().step == 3, 20, "the three single steps")
    went_round(r)
    assert r.snapshot().step == 3  # exactly three, then paused again
    r.resume()
    wait_until(lambda: r.snapshot().step > 20, 20, "the resumed run past step 20")
    assert r.snapshot().status == RUNNING
    r.pause()
    wait_until(lambda: r.snapshot().status == PAUSED, 20, "the pause")
    n = r.snapshot().step
    went_round(r)
    assert r.snapshot().step == n
    r.resume()
    t0 = time.perf_counter()
    assert r.stop(timeout=1.0)
    assert time.perf_counter() - t0 < 1.0
    assert r.snapshot().status == STOPPED and not r.alive


def test_live_lr_and_clip_changes_apply_at_the_next_step_and_are_events(runners):
    r = Runner(from_preset("watch it explode", lr=0.001, steps=10**6, probe_every=1000, device="cpu"))
    runners.append(r)
    r.start(paused=True)
    r.step_once(5)
    wait_until(lambda: r.snapshot().step == 5, 20, "step 5")
    r.set_lr(0.0005)
    r.set_clip("norm", 1.0)
    r.step_once(5)
    wait_until(lambda: r.snapshot().step == 10, 20, "step 10")
    s = r.snapshot()
    changes = [e for e in s.events if e["kind"] == "config_change"]
    assert [e["step"] for e in changes] == [5, 5] and {e["field"] for e in changes} == {"lr", "clip"}
    steps, lr = s.series("lr")
    _, post = s.series("grad_norm_post_clip")
    _, pre = s.series("grad_norm_pre_clip")
    assert np.all(lr[steps < 5] == 0.001) and np.all(lr[steps >= 5] == 0.0005)
    assert np.all(post[steps >= 5] <= 1.0 * (1 + 1e-6)) and np.all(pre[steps >= 5] > 1.0)
    assert np.all(post[steps < 5] == pre[steps < 5])  # no clipping before the change


def test_bad_live_values_are_refused_with_the_range(runners):
    r = Runner(Config(**SMALL))
    runners.append(r)
    with pytest.raises(ConfigError, match="lr"):
        r.set_lr(-1.0)
    with pytest.raises(ConfigError, match="clip_threshold"):
        r.set_clip("norm", 0.0)
    with pytest.raises(ConfigError, match="clip"):
        r.set_clip("sometimes", 1.0)


def test_bad_live_z_loss_and_weight_decay_are_refused_with_the_field_and_why(runners):
    lm = {"model": "transformer", "dataset": "pycode", "d_model": 32, "n_heads": 4, "context": 16, "device": "cpu"}
    pair = Runner([Config(**lm, optimizer="adamw"), Config(**lm, optimizer="adam")])
    mlp = Runner(Config(**SMALL, optimizer="adamw"))
    runners += [pair, mlp]
    for bad in (-1e-4, 2.0, float("nan")):
        with pytest.raises(ConfigError, match=r"z_loss: .* is not allowed; allowed: 0 to 1"):
            pair.set_z_loss(bad)
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=r"weight_decay: .* is not allowed; allowed: 0 to 1"):
            pair.set_weight_decay(bad)
    with pytest.raises(ConfigError, match=r"z_loss: 0.0001 is not allowed; a live change applies to the transformer "
                                          r"only; this run is the mlp"):
        mlp.set_z_loss(1e-4)
    with pytest.raises(ConfigError, match=r"weight_decay: 0.1 is not allowed; a live change applies with optimizer "
                                          r"adamw only; this run's is adam"):
        pair.set_weight_decay(0.1)  # run B's optimizer is adam
    pair.set_weight_decay(0.1, runs=[0])  # run A's is adamw: accepted
    mlp.set_weight_decay(0.1)  # any model with adamw
    assert [type(c).__name__ for c in pair._commands + mlp._commands] == ["SetWeightDecay", "SetWeightDecay"]


def test_explosion_ends_the_run_with_its_event(runners):
    r = Runner(from_preset("watch it explode", device="cpu"))
    runners.append(r)
    r.start()
    assert r.wait(30)
    s = r.snapshot()
    assert s.status == EXPLODED
    assert s.events[-1]["kind"] == "explosion" and s.events[-1]["param"]
    assert not np.isfinite(s.series("grad_norm_pre_clip")[1][-1])  # the non-finite value is kept, not dropped


def test_compare_runs_in_lockstep_on_identical_batches_and_weights(runners):
    a = from_preset("watch it explode", lr=0.001, steps=30, device="cpu")
    b = a.replace(clip="norm", clip_threshold=1.0)
    r = Runner([a, b], labels=["A", "B"])
    runners.append(r)
    wa = [p.detach().clone() for p in r.runs[0].trainer.params]
    wb = [p.detach().clone() for p in r.runs[1].trainer.params]
    assert all(torch.equal(x, y) for x, y in zip(wa, wb, strict=True))  # identical initial weights
    r.start()
    assert r.wait(30)
    sa, sb = r.snapshot(0), r.snapshot(1)
    assert sa.step == sb.step == 30
    # Same batch and weights at step 0: identical loss and raw gradient; only B clips.
    assert sa.series("loss")[1][0] == sb.series("loss")[1][0]
    assert sa.series("grad_norm_pre_clip")[1][0] == sb.series("grad_norm_pre_clip")[1][0]
    assert np.all(sb.series("grad_norm_post_clip")[1] <= 1.0 * (1 + 1e-6))
    assert sa.label == "A" and sb.label == "B"


def test_error_inside_the_thread_is_reported_not_lost(runners):
    r = Runner(Config(**SMALL, steps=10**6))
    runners.append(r)

    def broken(batch=None):
        raise RuntimeError("simulated failure in the step")

    r.runs[0].trainer.step = broken
    r.start()
    assert r.wait(5)
    s = r.snapshot()
    assert s.status == ERROR and "simulated failure" in s.error
    assert s.events[-1]["kind"] == "error" and "Traceback" in s.events[-1]["traceback"]


def test_a_runner_cannot_be_started_twice(runners):
    r = Runner(Config(**SMALL, steps=5))
    runners.append(r)
    r.start()
    with pytest.raises(RuntimeError):
        r.start()


def test_snapshot_is_a_copy_safe_to_read_while_training(runners):
    r = Runner(Config(**SMALL, steps=10**6))
    runners.append(r)
    r.start()
    wait_until(lambda: r.snapshot().step > 10, 20, "step 11")
    s = r.snapshot()
    first = s.view["value"].copy()
    wait_until(lambda: r.snapshot().step > s.step + 5, 20, "five more steps after the snapshot")
    assert np.array_equal(s.view["value"], first, equal_nan=True)  # the trainer never writes into a snapshot
    assert s.view["step"][0] == 0 and s.view["value"].shape[1] == len(s.columns)


def test_status_snapshot_has_the_status_without_the_history(runners):
    r = Runner(Config(**SMALL, steps=40, probe_every=3, eval_every=10))
    runners.append(r)
    r.start()
    assert r.wait(20)
    full, light = r.snapshot(), r.snapshot(history=False)
    assert light.view == {} and full.view["step"].size == 40
    for f in ("id", "status", "step", "config", "events", "latest", "device"):
        assert getattr(light, f) == getattr(full, f), f
    # Probes every 3 steps, evaluations at 0, 12, 24, 36: the status line shows the one at 36, not the probe at 39.
    assert full.probes[-1]["step"] == 39 and full.probes[-1]["test_accuracy"] is None
    assert [p["step"] for p in light.probes] == [36] and light.probes[0]["test_accuracy"] is not None


def test_compare_run_b_equals_b_alone_for_the_whole_run_after_a_explodes(runners):
    # A explodes within a few steps; B (clipped) must go on with its own batch stream, not restart A's or B's.
    a = from_preset("watch it explode", device="cpu")
    b = from_preset("clip it", device="cpu")
    pair, alone = Runner([a, b], labels=["A", "B"]), Runner(b)
    runners += [pair, alone]
    pair.start()
    alone.start()
    assert pair.wait(120) and alone.wait(120)
    sa, sb, s1 = pair.snapshot(0), pair.snapshot(1), alone.snapshot()
    assert sa.status == EXPLODED and sa.step < b.steps // 2
    assert sb.status == s1.status == FINISHED and sb.step == s1.step == b.steps
    assert sb.columns == s1.columns and np.array_equal(sb.view["step"], s1.view["step"])
    assert np.array_equal(sb.view["value"], s1.view["value"], equal_nan=True)  # every step, bit for bit
    assert [p["test_loss"] for p in sb.probes] == [p["test_loss"] for p in s1.probes]


class Recorder(RunObserver):
    """Notes each hook's call and the thread it came on."""

    def __init__(self):
        self.calls: list[tuple[str, object, str]] = []

    def on_step(self, run, step, row):
        self.calls.append(("step", step, threading.current_thread().name))

    def on_event(self, run, event, replaces=None):
        self.calls.append(("event", event["kind"], threading.current_thread().name))

    def on_end(self, run):
        self.calls.append(("end", run.status, threading.current_thread().name))


def test_observers_see_every_step_and_event_in_order_then_the_end_once(runners):
    r = Runner(Config(**SMALL, steps=6, probe_every=1000), labels=["a"])
    runners.append(r)
    seen = Recorder()
    r.observe(seen)
    r.start(paused=True)
    r.step_once(2)
    wait_until(lambda: r.snapshot().step == 2, 10, "two steps")
    r.runs[0].add_event({"step": 2, "kind": "note", "message": "from this thread"})
    r.resume()
    assert r.wait(20)
    steps = [c for c in seen.calls if c[0] == "step"]
    assert [c[1] for c in steps] == list(range(6)) and {c[2] for c in steps} == {f"train-{r.id}"}
    assert ("event", "note", threading.current_thread().name) in seen.calls
    assert seen.calls[-1] == ("end", FINISHED, f"train-{r.id}")
    assert [c[0] for c in seen.calls].count("end") == 1
    assert isinstance(RunObserver().on_step(r.runs[0], 0, np.zeros(1)), type(None))  # the base does nothing
