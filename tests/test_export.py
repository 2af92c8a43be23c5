"""One export schema (training/export.py) for the CLI, the lab's download and the Saved runs export; output paths
checked before training; table and events written both or neither."""

import errno
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from components import data as D
from components.page_saved import export_bytes
from training import export
from training import sweep as SW
from training.cli import main
from training.config import Config
from training.runner import Runner
from training.store import Store

CFG = Config(hidden_sizes=(32, 16), batch_size=16, steps=60, probe_every=10, eval_every=20, clip="norm",
             clip_threshold=0.5, device="cpu")
FLAGS = ["--hidden-sizes", "32,16", "--batch-size", "16", "--steps", "60", "--probe-every", "10", "--eval-every", "20",
         "--clip", "norm", "--clip-threshold", "0.5", "--device", "cpu", "--quiet"]


def _read(data: bytes, fmt: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data)) if fmt == "parquet" else pd.read_csv(io.BytesIO(data))


@pytest.fixture(scope="module")
def three_exports(tmp_path_factory):
    """The same run exported by the CLI, the lab's download and the Saved runs page, as CSV and Parquet bytes."""
    tmp = tmp_path_factory.mktemp("exports")
    out = {}
    for fmt in ("csv", "parquet"):
        path = tmp / f"cli.{fmt}"
        assert main(["run", *FLAGS, "--out", str(path)]) == 0
        out["cli", fmt] = path.read_bytes()
    store = Store(tmp / "store")
    runner = Runner(CFG)
    store.attach(runner)
    runner.start()
    assert runner.wait(60)
    assert store.close()
    snap = runner.snapshot()
    rid = runner.id
    out["lab", "csv"], out["lab", "parquet"] = D.table_csv(snap), D.table_parquet(snap)
    for fmt in ("csv", "parquet"):
        out["saved", fmt] = export_bytes(store, rid, fmt)
        path = tmp / f"store_export.{fmt}"
        store.export(rid, path)
        out["store export", fmt] = path.read_bytes()
    return out


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_exports_have_the_same_columns_types_and_values(three_exports, fmt):
    frames = {src: _read(data, f) for (src, f), data in three_exports.items() if f == fmt}
    ref = frames.pop("cli")
    assert list(ref.columns[:8]) == export.HEAD
    assert ref["step"].dtype == np.int64 and ref["clipped"].dtype == bool
    assert all(ref[c].dtype == np.float64 for c in ref.columns if c not in ("step", "clipped"))
    for src, df in frames.items():
        assert list(df.columns) == list(ref.columns), src
        assert df.dtypes.tolist() == ref.dtypes.tolist(), src
        pd.testing.assert_frame_equal(df, ref, check_exact=True, obj=src)  # same run, same numbers, bit for bit
    # Test loss and accuracy where measured (steps 0, 20, 40), NaN elsewhere; clipping at 0.5 fires at least once.
    assert ref.loc[ref["test_loss"].notna(), "step"].tolist() == [0, 20, 40]
    assert ref["test_accuracy"].between(0, 1).sum() == 3 and ref["clipped"].any()


def test_csv_exports_write_clipped_as_true_false_and_nan_as_nan(three_exports):
    for src in ("cli", "lab", "saved", "store export"):
        text = three_exports[src, "csv"].decode()
        first = text.splitlines()[1].split(",")
        assert first[5] in ("True", "False"), src
        assert text.splitlines()[2].split(",")[6] == "nan", src  # step 1 has no test evaluation


def test_an_old_stored_run_without_test_columns_exports_them_as_nan():
    cols = ["loss", "lr", "grad_norm_pre_clip", "grad_norm_post_clip", "clipped", "grad_norm/w"]
    df = export.frame(np.arange(3), cols, np.ones((3, len(cols))))
    assert list(df.columns) == [*export.HEAD, "grad_norm/w"] and df["test_loss"].isna().all()
    assert df["clipped"].dtype == bool and df["clipped"].all()


def test_the_lab_download_keeps_the_last_evaluation_of_each_bucket():
    r = Runner(Config(hidden_sizes=(8,), batch_size=8, steps=300, probe_every=10, eval_every=10, device="cpu"),
               recent=64, buckets=32)
    r.start()
    assert r.wait(60)
    snap = r.snapshot()
    df = D.run_table(snap)
    evals = {p["step"]: p["test_loss"] for p in snap.probes if p["test_loss"] is not None}
    folded = df[df["step"] < snap.view["step"][-64]]
    assert len(folded) > 5 and folded["test_loss"].notna().sum() > 5
    previous = -1
    for step, loss in zip(folded["step"], folded["test_loss"], strict=True):
        inside = [s for s in evals if previous < s <= step]  # the evaluations in this row's bucket
        assert (loss == evals[max(inside)]) if inside else np.isnan(loss), step
        previous = step


def test_the_adding_task_says_what_its_accuracy_means(tmp_path):
    out = tmp_path / "a.csv"
    assert main(["run", "--model", "rnn", "--dataset", "adding", "--seq-len", "5", "--hidden-size", "4",
                 "--steps", "3", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    side = json.loads((tmp_path / "a.csv.events.json").read_text())
    assert side["test_accuracy"] == "fraction of test outputs within 0.04 of the target"
    assert main(["run", *FLAGS, "--steps", "2", "--out", str(out)]) == 0
    side = json.loads((tmp_path / "a.csv.events.json").read_text())
    assert side["test_accuracy"] == "fraction of test examples classified correctly"


# ---- destinations, checked before training ---------------------------------------------------------------------

def _bad_out(tmp_path):
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "full.csv").symlink_to("/dev/full")
    return [
        (str(tmp_path / "folder.csv"), "is a folder"),
        (str(tmp_path / "full.csv"), "/dev"),
        ("/proc/x.csv", "/proc"),
        ("/sys/x.parquet", "/sys"),
        (str(tmp_path / "missing" / "x.csv"), "does not exist"),
        (str(tmp_path / "x.txt"), "must end in .csv or .parquet"),
    ]


def test_run_refuses_a_bad_destination_before_training(tmp_path, capsys, monkeypatch):
    import training.engine

    def no_training(*a, **k):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(training.engine.Trainer, "step", no_training)
    for out, needle in _bad_out(tmp_path):
        for extra in ([], ["--store", str(tmp_path / "store")]):
            assert main(["run", *FLAGS, *extra, "--out", out]) == 2, out
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "--out" in err and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "store").exists() or not Store(tmp_path / "store").list_runs()


def test_a_folder_that_cannot_be_written_is_refused_before_training(tmp_path, capsys, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(export.tempfile, "mkstemp", denied)  # root ignores chmod: deny the check's test file
    assert main(["run", *FLAGS, "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out: cannot write in {tmp_path} (Permission denied)"


def test_sweep_refuses_a_bad_destination_before_any_cell(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(SW.Sweep, "run", lambda *a, **k: pytest.fail("a cell ran before --out was checked"))
    for out, needle in _bad_out(tmp_path):
        assert main(["sweep", "--x", "lr=0.05", "--y", "batch_size=8", "--steps", "2", "--hidden-sizes", "8",
                     "--backend", "serial", "--quiet", "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err


# ---- writes: both or neither -------------------------------------------------------------------------------------

def test_a_write_cut_short_by_a_file_size_limit_leaves_the_previous_pair(tmp_path):
    """ulimit -f: the second, larger table cannot be written; the first table and its own events stay."""
    out = tmp_path / "o.csv"
    side = tmp_path / "o.csv.events.json"
    run = [sys.executable, "-m", "training", "run", *FLAGS, "--out", str(out)]
    subprocess.run([*run[:-2], "--steps", "5", "--out", str(out)], check=True, timeout=120)
    before = out.read_bytes(), side.read_bytes()
    assert len(before[0]) < 40 * 1024
    script = textwrap.dedent("""\
        ulimit -f 40
        exec "$@" --steps 400
    """)
    p = subprocess.run(["bash", "-c", script, "bash", *run], capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr[-500:]
    assert p.stderr.strip().splitlines()[-1].startswith(f"error: --out: cannot write {out} (File too large)")
    assert "Traceback" not in p.stderr
    assert (out.read_bytes(), side.read_bytes()) == before  # the old pair, whole and matching
    assert sorted(f.name for f in tmp_path.iterdir()) == ["o.csv", "o.csv.events.json"]  # no temporary left


def test_write_files_leaves_old_files_when_a_write_fails(tmp_path, monkeypatch):
    a, b = tmp_path / "t.csv", tmp_path / "t.csv.events.json"
    export.write_files([(b, b"old events"), (a, b"old table")])
    real = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    calls = []
    monkeypatch.setattr(export.os, "fdopen", lambda fd, mode: calls.append(1) or (real(fd, mode) if len(calls) == 1
                                                                                else Full(real(fd, mode))))
    with pytest.raises(OSError, match="No space"):
        export.write_files([(b, b"new events"), (a, b"new table")])
    assert (a.read_bytes(), b.read_bytes()) == (b"old table", b"old events")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["t.csv", "t.csv.events.json"]


def test_a_sweep_whose_file_cannot_be_written_is_kept_in_the_store(tmp_path, capsys, monkeypatch):
    def full(files):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "write_files", full)
    monkeypatch.setenv("GEL_DATA_DIR", str(tmp_path / "default"))
    args = ["sweep", "--x", "lr=0.05", "--y", "batch_size=8", "--steps", "2", "--hidden-sizes", "8",
            "--backend", "serial", "--quiet", "--out", str(tmp_path / "m.parquet")]
    assert main([*args, "--store", str(tmp_path / "s")]) == 1
    assert "No space left on device" in capsys.readouterr().err and len(SW.list_stored(tmp_path / "s")) == 1
    assert main(args) == 1  # no --store: the cells go to the default store rather than nowhere
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(SW.list_stored(tmp_path / "default")) == 1
    assert not (tmp_path / "m.parquet").exists()


def test_the_sweep_file_names_its_axes_by_field(tmp_path):
    out = tmp_path / "m.csv"
    assert main(["sweep", "--x", "lr=0.05,0.5", "--y", "batch_size=8", "--steps", "2", "--hidden-sizes", "8",
                 "--backend", "serial", "--quiet", "--out", str(out)]) == 0
    df, meta = SW.load(out)
    assert df.columns[:2].tolist() == ["lr", "batch_size"] and "x" not in df.columns and "y" not in df.columns
    assert meta["x"]["name"] == "lr" and sorted(df["lr"].unique()) == [0.05, 0.5]


def test_the_cli_names_the_outcome_as_the_lab_does(tmp_path):
    """The CLI skips activation statistics but keeps step 0's: a vanishing net is called vanished by both."""
    cfg = Config(hidden_sizes=(32,) * 30, activation="tanh", init="normal", init_std=0.05, batch_size=16, steps=5,
                 device="cpu")
    out = tmp_path / "v.csv"
    assert main(["run", "--hidden-sizes", ",".join(["32"] * 30), "--activation", "tanh", "--init", "normal",
                 "--init-std", "0.05", "--batch-size", "16", "--steps", "5", "--device", "cpu", "--quiet",
                 "--out", str(out)]) == 0
    cli = [e for e in json.loads((tmp_path / "v.csv.events.json").read_text())["events"] if e["kind"] == "outcome"]
    r = Runner(cfg)
    r.start()
    assert r.wait(60)
    lab = [e for e in r.snapshot().events if e["kind"] == "outcome"]
    assert len(cli) == len(lab) == 1 and cli[0]["outcome"] == lab[0]["outcome"] == "vanished"
    assert export.finite(lab[0]) == cli[0]


def test_the_events_file_says_on_what_share_of_steps_clipping_engaged(tmp_path):
    columns = ["loss", "lr", "grad_norm_pre_clip", "grad_norm_post_clip", "clipped"]
    rows = np.zeros((4, 5))
    rows[:, 4] = [1, 0, 1, 1]
    side = export.write_run(tmp_path / "s.csv", range(4), columns, rows, CFG.to_dict(), "finished", [])
    assert json.loads(side.read_text())["clipped_share"] == 0.75
    side = export.write_run(tmp_path / "e.csv", [], columns, rows[:0], CFG.to_dict(), "stopped", [])
    assert json.loads(side.read_text())["clipped_share"] is None  # no step: no share


def test_every_export_of_a_run_carries_its_clipped_share(tmp_path):
    path = tmp_path / "cli.csv"
    assert main(["run", *FLAGS, "--clip", "agc", "--clip-threshold", "0.05", "--out", str(path)]) == 0
    share = json.loads((tmp_path / "cli.csv.events.json").read_text())["clipped_share"]
    assert share == pd.read_csv(path)["clipped"].mean() and 0 < share <= 1
    assert main(["run", *FLAGS, "--clip", "agc", "--clip-threshold", "0.05", "--store", str(tmp_path / "d")]) == 0
    store = Store(tmp_path / "d")
    [info] = store.list_runs()
    side = store.export(info["id"], tmp_path / "stored.parquet")
    assert json.loads(side.read_text())["clipped_share"] == share
