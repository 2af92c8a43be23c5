"""Reliability: a killed server loses at most a second of metrics, bad input is refused in words, a failing run
never takes the manager down, and nothing is unpickled (the cap and the idle pause: tests/test_manager.py)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tests.apptest_helpers import wait_until
from training import cli
from training.config import MAX_ACTIVATIONS, MAX_DEPTH, MAX_PARAMS, Config, ConfigError
from training.manager import RunManager
from training.runner import ERROR, EXPLODED, FINISHED
from training.store import FLUSH_S, Store

REPO = Path(__file__).resolve().parent.parent
TINY = Config(hidden_sizes=(16,), dataset="gaussian", batch_size=8, steps=200, probe_every=1000)
FOREVER = TINY.replace(steps=10_000_000)

# A server in miniature: a manager saving to the store, and a log of (wall time, step recorded) every 10 ms.
SERVER = textwrap.dedent("""
    import sys, time
    from training.config import Config
    from training.manager import RunManager
    from training.store import FLUSH_S, Store

    manager = RunManager(store=Store(sys.argv[1]), idle_pause_s=0)
    run = manager.start(Config(hidden_sizes=(16,), dataset="gaussian", batch_size=8, steps=10_000_000,
                               probe_every=1000)).runs[0]
    with open(sys.argv[2], "w") as log:
        while True:
            rec = run.latest
            log.write(f"{time.time():.4f} {rec.step if rec else -1}\\n")
            log.flush()
            time.sleep(0.01)
""")


def _stored_steps(store: Store) -> int:
    runs = store.list_runs()
    return runs[0]["steps"] if runs else 0


@pytest.mark.slow
def test_kill_9_loses_at_most_the_last_second_and_the_database_opens_cleanly(tmp_path):
    data, log = tmp_path / "data", tmp_path / "steps.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(data), str(log)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        store = Store(data)
        wait_until(lambda: _stored_steps(store) > 0 or proc.poll() is not None, 60, "the first stored rows")
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(1.5 + random.uniform(0, FLUSH_S))  # train a while; kill anywhere in the flush cycle
        t_kill = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    proc.stderr.close()

    store = Store(data, stale_s=0.0)
    assert store.integrity() == "ok"
    (info,) = store.list_runs()
    stored = store.load_run(info["id"])
    assert info["status"] == "interrupted"  # it said running, and nobody is updating it any more
    np.testing.assert_array_equal(stored.steps, np.arange(len(stored.steps)))  # no gaps
    assert stored.rows.shape == (len(stored.steps), len(stored.columns)) and np.isfinite(stored.rows[:, 0]).all()

    logged = [tuple(map(float, line.split())) for line in log.read_text().splitlines() if line.count(" ") == 1]
    last_stored = int(stored.steps[-1])
    due = max(step for t, step in logged if t <= t_kill - 1.0)  # trained at least a second before the kill
    assert last_stored >= due, f"stored up to step {last_stored}, but step {due} was trained >1 s before the kill"
    (t0, s0), (t1, s1) = logged[0], logged[-1]
    rate = (s1 - s0) / (t1 - t0)
    trained = s1 + rate * (t_kill - t1)  # the log is sampled every 10 ms: extrapolate to the kill
    print(f"kill -9: {last_stored + 1} steps stored, ~{trained + 1:.0f} trained at {rate:.0f} steps/s; "
          f"~{max(trained - last_stored, 0):.0f} steps (~{max(trained - last_stored, 0) / rate:.2f} s) lost")


def test_an_exploding_run_is_followed_by_a_normal_one_that_trains_fine():
    m = RunManager(idle_pause_s=0)
    try:
        boom = m.start(TINY.replace(lr=10.0))
        assert boom.wait(60)
        snap = boom.snapshot()
        assert snap.status == EXPLODED and snap.events[-1]["kind"] == "explosion"
        ok = m.start(TINY)
        assert ok.wait(60)
        snap = ok.snapshot()
        assert snap.status == FINISHED and snap.step == TINY.steps
        loss = snap.view["value"][:, snap.columns.index("loss")]
        assert np.isfinite(loss).all() and loss[-20:].mean() < loss[:20].mean()
    finally:
        assert m.shutdown()


def test_an_error_in_the_training_thread_shows_as_error_and_the_manager_keeps_working(tmp_path):
    store = Store(tmp_path / "data")
    m = RunManager(store=store, idle_pause_s=0)
    try:
        bad = m.start(TINY, paused=True)
        real_step = bad.runs[0].trainer.step

        def step(batch=None):
            rec = real_step(batch)
            if rec.step == 5:
                raise RuntimeError("the GPU caught fire")
            return rec

        bad.runs[0].trainer.step = step
        bad.resume()
        assert bad.wait(30)
        snap = bad.snapshot()
        assert snap.status == ERROR and snap.error == "RuntimeError: the GPU caught fire"
        assert snap.events[-1]["kind"] == "error" and "traceback" in snap.events[-1]
        good = m.start(TINY)
        assert good.wait(60) and good.snapshot().status == FINISHED
        store.flush()
        info = store.run_info(bad.id)
        assert (info["status"], info["error"], info["steps"]) == (ERROR, "RuntimeError: the GPU caught fire", 5)
    finally:
        assert m.shutdown()


# Bad input at the CLI: one line on stderr naming the problem, exit status 2.
@pytest.mark.parametrize("content,expected", [
    (b" " * (cli.MAX_CONFIG_BYTES + 1), "larger than 64 KiB"),
    (b"lr = 0.1\n", "is not valid JSON"),
    (b"\xff\xfe garbage", "is not valid JSON"),
    (b"[1, 2, 3]", "must hold a JSON object"),
    (b'{"lr": "fast"}', "lr: 'fast' is not allowed; allowed: 1e-06 to 10"),
    (b'{"learning_rate": 0.1}', "learning_rate: 0.1 is not allowed; unknown field; did you mean lr?"),
    (b'{"steps": 1e400}', "steps: inf is not allowed"),
    (b'{"seed": ' + b"9" * 5000 + b"}", "is not valid JSON"),
    (b"[" * 60_000, "is not valid JSON"),
], ids=["too-large", "not-json", "not-utf8", "json-list", "bad-value", "unknown-field", "inf", "huge-int",
        "deep-nesting"])
def test_a_bad_config_file_exits_2_with_one_line(tmp_path, capsys, content, expected):
    path = tmp_path / "cfg.json"
    path.write_bytes(content)
    code = cli.main(["run", "--config", str(path), "--out", str(tmp_path / "o.csv"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: --config: ") and expected in err, err
    assert len(err) < 400


def test_a_config_file_that_is_not_a_file_is_refused(tmp_path, capsys):
    assert cli.main(["run", "--config", str(tmp_path), "--out", str(tmp_path / "o.csv")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_cli_store_flag_refuses_a_file(tmp_path, capsys):
    f = tmp_path / "x.txt"
    f.write_text("x")
    assert cli.main(["run", "--steps", "5", "--store", str(f)]) == 2
    assert capsys.readouterr().err == f"error: --store: {f} is not a folder\n"


# Resource caps: each refuses with a message naming the cap.
@pytest.mark.parametrize("changes,field,cap_text", [
    ({"hidden_sizes": (4096,) * 4}, "hidden_sizes", f"the cap is {MAX_PARAMS:,}"),
    ({"hidden_sizes": (8,) * (MAX_DEPTH + 1)}, "hidden_sizes", f"1 to {MAX_DEPTH} comma-separated widths"),
    ({"hidden_sizes": (4097,)}, "hidden_sizes", "each 1 to 4096"),
    ({"model": "rnn", "dataset": "adding", "hidden_size": 2049}, "hidden_size", "allowed: 1 to 2048"),
    ({"model": "rnn", "dataset": "adding", "seq_len": 1001}, "seq_len", "allowed: 2 to 1000"),
    ({"batch_size": 4097}, "batch_size", "allowed: 1 to 4096"),
    ({"steps": 10_000_001}, "steps", "allowed: 1 to 1e+07"),
    ({"probe_every": 100_001}, "probe_every", "allowed: 1 to 100000"),
    ({"model": "lstm", "dataset": "adding", "batch_size": 4096, "seq_len": 1000, "hidden_size": 2048},
     "batch_size", f"the cap is {MAX_ACTIVATIONS:,}"),
])
def test_each_resource_cap_is_enforced_with_a_message_naming_it(changes, field, cap_text):
    with pytest.raises(ConfigError) as e:
        Config(**changes)
    assert e.value.field == field and str(e.value).startswith(f"{field}: ") and cap_text in str(e.value)


def test_caps_hold_at_the_cli_and_in_the_url_too(tmp_path, capsys):
    from training.config import from_query

    assert cli.main(["run", "--batch-size", "5000", "--out", str(tmp_path / "o.csv")]) == 2
    assert capsys.readouterr().err == ("error: --batch-size: 5000 is not allowed; allowed: 1 to 4096, or full (0: the "
                                       "whole training set)\n")
    cfg, errors = from_query({"hidden_sizes": ",".join(["8"] * 100), "steps": "1e99"})
    assert cfg == Config() and len(errors) == 2


def test_a_bad_environment_setting_is_refused_naming_the_variable():
    code = "import training.manager"
    env = {**os.environ, "PYTHONPATH": str(REPO), "GEL_IDLE_PAUSE_S": "soon"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "GEL_IDLE_PAUSE_S: 'soon' is not allowed" in r.stderr


def test_nothing_is_unpickled_anywhere():
    """No pickle, and any torch.load says weights_only=True: a checkpoint is data, never code."""
    offenders = []
    for path in REPO.rglob("*.py"):
        if any(part.startswith(".") or part in ("node_modules", "__pycache__") for part in path.parts):
            continue
        text = path.read_text(errors="replace")
        if re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.M) or "pickle.load" in text:
            offenders.append(f"{path.relative_to(REPO)}: pickle")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                offenders.append(f"{path.relative_to(REPO)}: {call}")
    offenders = [o for o in offenders if not o.startswith("tests/test_reliability.py")]
    assert not offenders, offenders


def test_the_store_holds_only_json_and_float_bytes(tmp_path):
    m = RunManager(store=Store(tmp_path / "data"), idle_pause_s=0)
    try:
        runner = m.start(TINY.replace(steps=10))
        assert runner.wait(30) and m.store.flush()
    finally:
        assert m.shutdown()
    import sqlite3

    with sqlite3.connect(m.store.path) as conn:
        for (cfg, cols) in conn.execute("SELECT config_json, columns_json FROM runs"):
            json.loads(cfg), json.loads(cols)
        for (blob,) in conn.execute("SELECT data FROM metrics"):
            assert len(blob) == 8 * len(json.loads(cols))
        for (ev,) in conn.execute("SELECT json FROM events"):
            json.loads(ev)
