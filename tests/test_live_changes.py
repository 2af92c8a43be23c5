"""Live setting changes close together make one marker: three arrow-key presses on the learning-rate slider are
one config_change event, from the first press's step and old value to the last one's new value, in the charts and
in the store alike."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.apptest_helpers import wait_until
from training import run as RU
from training import runner as RN
from training.config import Config
from training.engine import Trainer
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


# The transformer's mitigations that change live: the z-loss coefficient and AdamW's weight decay.
TF_SMALL = {"model": "transformer", "dataset": "pycode", "d_model": 32, "n_heads": 4, "context": 16, "batch_size": 4,
            "device": "cpu", "steps": 10**6, "probe_every": 1000}
K, M = 3, 3  # the change lands at step K; M steps follow it


def changed_at_k(runners, cfg: Config, change) -> Runner:
    """A paused run of ``cfg``: K steps, ``change(runner)``, M more steps; still paused (its trainer kept)."""
    r = Runner(cfg)
    runners.append(r)
    r.start(paused=True)
    r.step_once(K)
    wait_until(lambda: r.snapshot().step == K, 30, f"step {K}")
    change(r)
    r.step_once(M)
    wait_until(lambda: r.snapshot().step == K + M, 30, f"step {K + M}")
    return r


def plain_sgd(cfg: Config, z_loss: float, z_from: int) -> tuple[list[float], list[torch.Tensor]]:
    """Plain PyTorch: cross-entropy + z·mean(log Z²) from step ``z_from`` on, w -= lr·g; the engine's model and
    batch stream for the same start. The losses (cross-entropy alone) and the final weights."""
    ref = Trainer(cfg, "cpu")
    losses = []
    for s in range(K + M):
        x, y = ref.sample()
        logits = ref.model(x)
        ce = F.cross_entropy(logits, y)
        z = z_loss if s >= z_from else 0.0
        grads = torch.autograd.grad(ce + z * torch.logsumexp(logits, -1).square().mean(), ref.params)
        with torch.no_grad():
            for p, g in zip(ref.params, grads, strict=True):
                p.sub_(cfg.lr * g)
        losses.append(float(ce.detach()))
    return losses, ref.params


def test_a_live_z_loss_change_enters_the_objective_from_its_step_on(runners):
    cfg = Config(**TF_SMALL, lr=0.05)
    r = changed_at_k(runners, cfg, lambda r: r.set_z_loss(0.05))
    _, loss = r.snapshot().series("loss")
    losses, weights = plain_sgd(cfg, 0.05, K)
    np.testing.assert_allclose(loss, losses, rtol=1e-6)  # the loss column stays the cross-entropy alone
    for a, b in zip(r.runs[0].trainer.params, weights, strict=True):
        torch.testing.assert_close(a, b)
    # Discriminating: the z-loss from step 0, or never, gives other numbers.
    assert not np.allclose(loss[1:K], plain_sgd(cfg, 0.05, 0)[0][1:K], rtol=1e-6)
    assert not np.allclose(loss[K + 1:], plain_sgd(cfg, 0.05, K + M)[0][K + 1:], rtol=1e-6)


def plain_adamw(cfg: Config, weight_decay: float, from_step: int) -> list[torch.Tensor]:
    """Plain torch.optim.AdamW (matrices decay, biases and gains do not), swapped at ``from_step`` for one built with
    ``weight_decay`` that takes over the first one's moments; the final weights."""
    ref = Trainer(cfg, "cpu")
    mats, rest = [p for p in ref.params if p.dim() >= 2], [p for p in ref.params if p.dim() < 2]

    def adamw(wd: float) -> torch.optim.AdamW:
        return torch.optim.AdamW([{"params": mats, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}],
                                 lr=cfg.lr, betas=(0.9, cfg.beta2), eps=cfg.eps)

    opt = adamw(cfg.weight_decay)
    for s in range(K + M):
        if s == from_step:
            opt, old = adamw(weight_decay), opt
            opt.state.update(old.state)
        x, y = ref.sample()
        opt.zero_grad()
        F.cross_entropy(ref.model(x), y).backward()
        opt.step()
    return ref.params


def test_a_live_weight_decay_change_equals_adamw_built_with_it_from_that_step(runners):
    cfg = Config(**TF_SMALL, optimizer="adamw", lr=0.01)
    r = changed_at_k(runners, cfg, lambda r: r.set_weight_decay(0.5))
    trained = r.runs[0].trainer.params
    for a, b in zip(trained, plain_adamw(cfg, 0.5, K), strict=True):
        torch.testing.assert_close(a, b)
    # Discriminating: without the change the weights end elsewhere.
    assert not all(torch.allclose(a, b) for a, b in zip(trained, plain_adamw(cfg, 0.0, K), strict=True))
    assert [g["weight_decay"] for g in r.runs[0].trainer.optimizer.param_groups] == [0.5, 0.0]  # matrices only


def test_z_loss_and_weight_decay_changes_are_worded_events_chart_markers_and_stored(runners, tmp_path):
    from components import charts as C
    from components import transformer_charts as TC
    from components.data import live_config
    from components.saved_charts import stored_view

    store = Store(tmp_path / "data")
    cfg = Config(**TF_SMALL, optimizer="adamw")
    r = Runner(cfg)
    store.attach(r)
    try:
        runners.append(r)
        r.start(paused=True)
        r.step_once(K)
        wait_until(lambda: r.snapshot().step == K, 30, f"step {K}")
        r.set_z_loss(1e-4)
        r.set_weight_decay(0.1)
        r.step_once(M)
        wait_until(lambda: r.snapshot().step == K + M, 30, f"step {K + M}")
        snap = r.snapshot()
        words = ["z-loss 0 → 0.0001", "weight decay 0 → 0.1"]
        assert [(e["step"], e["message"]) for e in changes(snap.events)] == [(K, w) for w in words]
        assert (snap.z_loss, snap.weight_decay) == (1e-4, 0.1) == (r.runs[0].trainer.z_loss,
                                                                   r.runs[0].trainer.weight_decay)
        live = live_config(snap)  # what the controls show on reattach
        assert (live.z_loss, live.weight_decay) == (1e-4, 0.1)
        for fig in (C.loss_figure([snap]), TC.log_z_figure(snap)):
            assert [s.x0 for s in fig.layout.shapes] == [K, K]
            assert set(words) <= {a.text for a in fig.layout.annotations}
        r.stop()
        assert store.flush()
        stored = store.load_run(r.id)
        assert [e["message"] for e in changes(stored.events)] == words
        view = stored_view("", stored.config, {"loss": {"step": stored.steps, "value": stored.rows[:, 0],
                                                        "lo": stored.rows[:, 0], "hi": stored.rows[:, 0]}},
                           stored.events)
        assert (view.z_loss, view.weight_decay) == (1e-4, 0.1)  # the saved run's settings as it ended
    finally:
        r.stop()
        assert store.close()
