"""The server under abuse and large models: a chart request's cost is bounded whatever it names, an ended run
frees its model, optimizer and data, building a model never blocks the routes, run ids are random, and a
message never names another session's runs."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import subprocess
import sys
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from starlette.routing import Router

from bench import asgi
from components import live_api
from tests.apptest_helpers import wait_until
from tests.test_live_status import get
from training import manager as M
from training.config import Config
from training.manager import RunManager
from training.runner import EndedTrainer, Runner, new_run_id

REPO = Path(__file__).resolve().parent.parent
TINY = Config(hidden_sizes=(16,), dataset="gaussian", batch_size=8, steps=20, probe_every=5)
FOREVER = TINY.replace(steps=10_000_000, probe_every=1000)


def _finished(cfg: Config = TINY):
    runner = M.get_manager().start(cfg)
    assert runner.wait(60)
    return runner


# /api/chart: one id repeated 1,000 times took 4.9 s and 2.2 GB, one full history copy per repeat.
def test_a_chart_request_repeating_one_id_copies_one_snapshot(monkeypatch):
    rid = _finished().id
    copies = []
    real = live_api._snapshot
    monkeypatch.setattr(live_api, "_snapshot", lambda i: copies.append(i) or real(i))
    code, body, _ = get(live_api.chart_url("chart_loss", [rid] * 1000, [rid] * 1000))
    assert code == 200 and len(body["figure"]["data"]) > 0
    assert copies == [rid]  # the overlay's repeats of a drawn run are dropped too


def test_a_chart_request_naming_more_runs_than_a_page_draws_is_refused():
    a, b, c = (_finished().id for _ in range(3))
    code, body, _ = get(live_api.chart_url("chart_loss", [a, b, c]))
    assert code == 400 and body["error"] == (f"runs: at most {live_api.MAX_RUNS} distinct run ids, "
                                             f"extra: at most {live_api.MAX_EXTRA}")
    extra = [new_run_id() for _ in range(live_api.MAX_EXTRA + 1)]
    assert get(live_api.chart_url("chart_loss", [a], extra))[0] == 400
    # The most a page asks for still answers: A and B, and every overlay the picker allows.
    code, _, _ = get(live_api.chart_url("chart_loss", [a, b], [c] * 3 + extra[:live_api.MAX_EXTRA - 1]))
    assert code == 200


def test_a_per_run_chart_copies_only_the_run_it_draws(monkeypatch):
    a, b = (_finished().id for _ in range(2))
    copies = []
    real = live_api._snapshot
    monkeypatch.setattr(live_api, "_snapshot", lambda i: copies.append(i) or real(i))
    assert get(live_api.chart_url("chart_heatmap", [a, b], [b]))[0] == 200
    assert copies == [a]


def test_the_chart_route_quotes_an_unknown_key_short():
    code, body, _ = get(live_api.CHART_PREFIX + "x" * 5000 + "?runs=r1")
    assert code == 404 and len(body["error"]) < 300


# Ended runs: six one-step Adam runs of a 4096-4096-4096 MLP kept 4.6 GB of models and optimizer state.
def test_an_ended_run_frees_its_model_optimizer_and_data_and_keeps_its_history():
    runner = Runner(TINY.replace(optimizer="adam"))
    trainer = runner.runs[0].trainer
    model, opt, data = weakref.ref(trainer.model), weakref.ref(trainer.optimizer), weakref.ref(trainer.data)
    del trainer
    runner.start()
    assert runner.wait(60)
    gc.collect()
    assert model() is None and opt() is None and data() is None
    run = runner.runs[0]
    assert isinstance(run.trainer, EndedTrainer) and run.trainer.step_idx == 20
    snap = run.snapshot()
    assert snap.status == "finished" and snap.step == 20 and len(snap.series("loss")[1]) == 20
    assert snap.device == "cpu" and snap.names == ["blocks.0.fc.weight", "blocks.0.fc.bias", "head.weight",
                                                   "head.bias"]


def test_a_stopped_and_a_failed_run_are_released_too():
    runner = Runner(FOREVER)
    runner.start()
    wait_until(lambda: runner.snapshot(history=False).step > 0, 20, "the first step")
    assert runner.stop(5)
    assert isinstance(runner.runs[0].trainer, EndedTrainer)
    never = Runner(TINY)
    assert never.stop() and isinstance(never.runs[0].trainer, EndedTrainer)  # stopped before it started


def test_ended_runs_are_dropped_oldest_first_beyond_the_byte_bound():
    per_run = _finished().runs[0].held_bytes()
    m = RunManager(idle_pause_s=0, keep_finished=100, keep_finished_bytes=int(2.5 * per_run))
    try:
        started = []
        for _ in range(5):
            started.append(m.start(TINY))
            assert started[-1].wait(60)
        m.start(TINY).wait(60)  # pruning happens at a start
        kept = [r for r in m.runners() if r in started]
        assert kept == started[-2:]  # the two newest ended runs fit under 2.5 runs' bytes
        assert sum(run.held_bytes() for r in kept for run in r.runs) <= m.keep_finished_bytes
    finally:
        assert m.shutdown()


def test_the_live_route_never_blocks_the_event_loop_while_the_manager_is_busy():
    """Whatever holds the manager's lock (a slow start, a prune), the loop that serves every page and
    /_stcore/health keeps turning: the route waits on a worker thread."""
    manager = M.get_manager()
    rid = _finished().id
    sent, ticks = [], []

    async def send(message):
        sent.append(message)

    async def ticker():
        for _ in range(10):
            await asyncio.sleep(0.05)
            ticks.append(time.monotonic())

    async def main():
        route = asyncio.ensure_future(Router(routes=live_api.routes())(asgi.scope(live_api.API_PREFIX + rid),
                                                                      asgi.receive, send))
        await ticker()
        assert ticks and not sent  # the loop ticked while the route waited for the lock
        held.release()
        await asyncio.wait_for(route, 10)

    held = manager._lock
    held.acquire()
    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, main()).result(timeout=30)
    finally:
        if held.locked():
            held.release()
    assert len(ticks) == 10 and sent[0]["status"] == 200
    assert json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["runs"][0]["state"] == "finished"


# Run ids: `r<counter>-<8 hex>` restarted in every process (every CLI run was r1-...): guessable and clashing.
def test_run_ids_carry_96_random_bits_and_differ_across_processes():
    ids = {Runner(TINY).id for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch(r"r[0-9a-f]{24}", i) for i in ids)
    code = "from training.runner import Runner; from training.config import Config; " \
           "print(Runner(Config(hidden_sizes=(4,))).id)"
    firsts = {subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                             timeout=120).stdout.strip() for _ in range(2)}
    assert len(firsts) == 2 and all(re.fullmatch(r"r[0-9a-f]{24}", i) for i in firsts)


# Step cost: Stop lands between steps; an MLP 4096^3 at batch 4096 took 11.7 s a step, an LSTM 2048 wide 59 s.
def test_a_step_costlier_than_the_cap_is_refused_naming_the_batch_range():
    from training.config import MAX_STEP_GFLOP, ConfigError, max_batch_size

    big = Config(hidden_sizes=(4096,) * 3, batch_size=1)
    top = max_batch_size(big)
    assert 1 <= top < 4096 and big.replace(batch_size=top).batch_size == top
    with pytest.raises(ConfigError) as e:
        big.replace(batch_size=4096)
    msg = str(e.value)
    assert e.value.field == "batch_size" and msg.startswith("batch_size: 4096 is not allowed; one step would cost")
    assert f"the cap is {MAX_STEP_GFLOP:g} GFLOP" in msg and msg.endswith(f"allowed for this network: 1 to {top}")
    with pytest.raises(ConfigError, match=f"1 to {top}$"):
        big.replace(batch_size=top + 1)


@pytest.mark.parametrize("changes,field", [
    ({"hidden_size": 2048, "seq_len": 1000, "batch_size": 1}, "seq_len"),
    ({"hidden_size": 2048, "seq_len": 50, "batch_size": 1}, "hidden_size"),
])
def test_a_recurrent_net_too_costly_even_at_batch_1_names_its_size(changes, field):
    from training.config import ConfigError

    with pytest.raises(ConfigError) as e:
        Config(model="lstm", dataset="adding", **changes)
    assert e.value.field == field and "even at batch_size 1" in str(e.value) and "\n" not in str(e.value)


def test_the_step_cost_cap_holds_at_the_cli_and_in_the_url(tmp_path, capsys):
    from training import cli
    from training.config import from_query

    rc = cli.main(["run", "--hidden-sizes", "4096,4096,4096", "--batch-size", "4096", "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --batch-size: 4096 is not allowed; one step would cost")
    assert err.count("\n") == 1 and not (tmp_path / "o.csv").exists()
    cfg, errors = from_query({"hidden_sizes": "4096,4096,4096", "batch_size": "4096"})
    # batch_size falls back to 64, still too costly for that network: then the widths fall back too
    assert cfg == Config() and len(errors) == 2 and all("one step would cost" in e for e in errors)


def test_every_preset_and_the_step_estimate_inputs_stay_true():
    from training import registry as R
    from training.config import TEST_EXAMPLES, TRAIN_EXAMPLES, from_preset

    for name in R.PRESETS:
        from_preset(name)  # every lesson fits under the cap
    for name, build in R.DATASETS.items():  # the estimate counts the held-out pass each dataset really has
        data = build(10)
        assert len(data.x_test) == TEST_EXAMPLES[name], name  # examples (pycode: windows)
        assert (len(data.x_train) if data.x_train is not None else None) == TRAIN_EXAMPLES.get(name), name


# The first Start after the server started took 10.5 s to draw (the next ones 1.2-1.9 s): it paid for imports.
WARM_CHECK = """
import sys, torch
from bench import asgi
from components import live_api
live_api.warm_up()
before = set(sys.modules)
from components import live_figures as LF
from training.config import Config
from training.runner import Run
for cfg in (Config(), Config(model="gru", dataset="temporal_order", steps=3, optimizer="momentum")):
    run = Run(cfg)
    run.record(run.trainer.step())
    for key in LF.KEYS:
        LF.figure(key, [run.snapshot()]).to_json()
print(sorted(m for m in set(sys.modules) - before if not m.startswith("encodings")))
"""


def test_after_the_warm_up_a_first_run_and_its_charts_import_nothing_more():
    r = subprocess.run([sys.executable, "-c", WARM_CHECK], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_the_server_starts_the_warm_up_in_the_background():
    code = ("import sys, threading, serve; t = next(t for t in threading.enumerate() if t.name == 'warm-up'); "
            "print(t.daemon, 'torch._dynamo' in sys.modules); t.join(240); "
            "print('torch._dynamo' in sys.modules and 'sklearn.datasets' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["True", "False", "True"]  # a daemon thread, still warming up as the import returns
