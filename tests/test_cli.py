import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from training import registry as R
from training.cli import main


def test_run_writes_the_documented_columns_and_events(tmp_path, capsys):
    out = tmp_path / "run.csv"
    assert main(["run", "--preset", "watch it explode", "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out)
    head = ["step", "loss", "lr", "grad_norm_pre_clip", "grad_norm_post_clip", "clipped"]
    assert list(df.columns[:6]) == head
    names = ["blocks.0.fc.weight", "blocks.0.fc.bias", "blocks.1.fc.weight", "blocks.1.fc.bias",
             "blocks.2.fc.weight", "blocks.2.fc.bias", "head.weight", "head.bias"]
    for kind in ("grad_norm", "weight_norm", "update_ratio"):
        assert [c for c in df.columns if c.startswith(kind + "/")] == [f"{kind}/{n}" for n in names]
    assert df["step"].tolist() == list(range(len(df)))
    side = json.loads((tmp_path / "run.csv.events.json").read_text())
    assert side["status"] == "exploded" and side["events"][-1]["kind"] == "explosion"
    assert side["config"]["init"] == "normal"
    assert "exploded" in capsys.readouterr().err


def test_run_parquet_and_flags_override_the_preset(tmp_path):
    out = tmp_path / "run.parquet"
    assert main(["run", "--preset", "clip it", "--steps", "7", "--clip-threshold", "2.5", "--hidden-sizes", "32,16",
                 "--out", str(out), "--quiet"]) == 0
    df = pd.read_parquet(out)
    assert len(df) == 7 and (df["grad_norm_post_clip"] <= 2.5 * (1 + 1e-6)).all() and df["clipped"].dtype == bool


def test_presets_lists_each_preset_on_one_line(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(R.PRESETS) and all(line.split("  ")[0].strip() in R.PRESETS for line in lines)


@pytest.mark.parametrize("argv,needle", [
    (["run", "--lr", "abc"], "--lr"),
    (["run", "--lr", "100"], "allowed: 1e-06 to 10"),
    (["run", "--activation", "swish"], "--activation"),
    (["run", "--model", "lstm"], "--dataset"),
    (["run", "--bogus", "1"], "unrecognized"),
    (["run", "--preset", "nope"], "preset"),
    (["run", "--steps", "5", "--out", "x.txt"], "--out"),
    (["fly"], "invalid choice"),
    (["run", "--batch-size", "half"], "--batch-size"),
    (["run", "--model", "rnn", "--dataset", "adding", "--batch-size", "full"], "fixed training set"),
    (["run", "--model", "rnn", "--dataset", "adding", "--loss", "cross_entropy"], "allowed: auto, mse"),
    (["run", "--sharpness-every", "-2"], "allowed: 0 to 100000"),
])
def test_bad_flags_exit_2_with_one_line(argv, needle, tmp_path, capsys):
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "x.csv")] if argv[0] == "run" else argv
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err


def test_bad_flag_in_a_real_process_exits_2_without_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "training", "run", "--batch-size", "-1", "--out",
                        str(tmp_path / "a.csv")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == "error: --batch-size: -1 is not allowed; allowed: 1 to 4096, or full (0: the whole " \
                               "training set)"


# ---- threads --------------------------------------------------------------------------------------------------------

TINY = ["--hidden-sizes", "8", "--batch-size", "8", "--steps", "3", "--device", "cpu", "--quiet"]


def test_run_uses_one_torch_thread_unless_told(tmp_path):
    """In a fresh process (torch's default is every core): the sidecar records the threads the run used."""
    code = ("import sys, torch; from training.cli import main; rc = main(sys.argv[1:]); "
            "print(torch.get_num_threads()); sys.exit(rc)")
    out = tmp_path / "t.csv"
    for extra, want in (([], 1), (["--threads", "2"], 2)):
        p = subprocess.run([sys.executable, "-c", code, "run", *TINY, *extra, "--out", str(out)], capture_output=True,
                           text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})
        assert p.returncode == 0, p.stderr[-500:]
        assert int(p.stdout.strip()) == want and json.loads(out.with_name("t.csv.events.json").read_text())[
            "threads"] == want


@pytest.mark.parametrize("value", ["0", "-1", "abc", "100000"])
def test_a_bad_thread_count_exits_2_with_the_range(value, tmp_path, capsys):
    assert main(["run", *TINY, "--threads", value, "--out", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --threads: {value} is not allowed; allowed: 1 to {os.cpu_count()} (the CPU cores here)"


# ---- config files ---------------------------------------------------------------------------------------------------

def test_config_prints_a_preset_as_json_that_run_accepts(tmp_path, capsys):
    assert main(["config", "--preset", "clip it", "--steps", "4"]) == 0
    text = capsys.readouterr().out
    d = json.loads(text)
    assert d["clip"] == "norm" and d["steps"] == 4 and d["hidden_sizes"] == [512, 256, 128]
    (tmp_path / "c.json").write_text(text)
    assert main(["run", "--config", str(tmp_path / "c.json"), "--quiet", "--out", str(tmp_path / "c.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "c.csv")) == 4
    side = json.loads((tmp_path / "c.csv.events.json").read_text())
    assert side["config"] == d


def test_config_refuses_a_bad_flag_in_one_line(capsys):
    assert main(["config", "--lr", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --lr: 100") and "allowed: 1e-06 to 10" in err


def test_the_readme_config_example_works(repo_root, tmp_path):
    """The README's `config ... > my.json` and `run --config my.json ...` lines, run as written, in order."""
    block = (repo_root / "README.md").read_text().split("## Command line", 1)[1].split("```bash", 1)[1].split("```")[0]
    lines = [ln.split("  #")[0].strip() for ln in block.splitlines()]
    wanted = [ln for ln in lines if " config " in ln or "--config my.json" in ln]
    assert len(wanted) == 2 and wanted[0].endswith("> my.json") and wanted.index(wanted[0]) == 0
    env = {**os.environ, "GEL_DATA_DIR": str(tmp_path / "data"), "PATH": f"{Path(sys.executable).parent}:"
           f"{os.environ['PATH']}", "PYTHONPATH": str(repo_root)}
    for line in wanted:
        p = subprocess.run(line.replace("python ", f"{sys.executable} ", 1) + " --quiet" * ("run " in line),
                           shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (line, p.stderr[-500:])
    assert (tmp_path / "run.csv").exists() and (tmp_path / "run.csv.events.json").exists()
    assert json.loads((tmp_path / "my.json").read_text())["init_std"] == 1.0  # the preset's settings


# ---- one loop for a file and for the store ------------------------------------------------------------------------

def test_a_stored_run_and_a_file_run_of_one_config_record_the_same_rows(tmp_path):
    from training.store import Store

    argv = ["run", "--hidden-sizes", "8", "--batch-size", "8", "--steps", "20", "--device", "cpu", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "f.csv")]) == 0
    assert main([*argv, "--store", str(tmp_path / "d")]) == 0
    store = Store(tmp_path / "d")
    [info] = store.list_runs()
    stored = store.load_run(info["id"])
    file_rows = pd.read_csv(tmp_path / "f.csv")
    assert info["status"] == "finished" and len(stored.steps) == len(file_rows) == 20
    assert stored.rows[:, stored.columns.index("loss")].tolist() == file_rows["loss"].tolist()


def test_an_error_in_a_stored_run_is_saved_as_error_with_the_steps_before_it(tmp_path, capsys, monkeypatch):
    from training.engine import Trainer
    from training.store import Store

    real = Trainer.step

    def fails_at_step_3(self):
        if self.step_idx == 3:
            raise RuntimeError("device lost")
        return real(self)

    monkeypatch.setattr(Trainer, "step", fails_at_step_3)
    assert main(["run", "--hidden-sizes", "8", "--batch-size", "8", "--steps", "10", "--device", "cpu", "--quiet",
                 "--store", str(tmp_path / "d")]) == 1
    assert "error: RuntimeError: device lost" in capsys.readouterr().err
    store = Store(tmp_path / "d")
    [info] = store.list_runs()
    stored = store.load_run(info["id"])
    assert info["status"] == "error" and len(stored.steps) == 3
    assert stored.events[-1]["kind"] == "error" and stored.events[-1]["message"] == "RuntimeError: device lost"


@pytest.mark.parametrize("clip", [["--clip", "none"], ["--clip", "agc", "--clip-threshold", "0.02"],
                                  ["--clip", "norm", "--clip-threshold", "0.3"]], ids=lambda c: c[1])
def test_the_summary_says_on_what_share_of_steps_clipping_engaged(clip, tmp_path, capsys):
    argv = ["run", "--hidden-sizes", "8", "--batch-size", "8", "--steps", "20", "--device", "cpu", "--quiet", *clip]
    assert main([*argv, "--out", str(tmp_path / "f.csv")]) == 0
    file_line = capsys.readouterr().err
    share = pd.read_csv(tmp_path / "f.csv")["clipped"].mean()
    assert f"clipped on {share:.1%} of steps" in file_line
    assert main([*argv, "--store", str(tmp_path / "d")]) == 0  # the same run through the store: the same share
    assert f"clipped on {share:.1%} of steps" in capsys.readouterr().err
    if clip[1] == "none":
        assert share == 0
    else:
        assert 0 < share <= 1


def test_full_batch_mse_run_with_the_sharpness_probe_writes_its_column(tmp_path, capsys):
    out = tmp_path / "eos.csv"
    assert main(["run", "--batch-size", "full", "--loss", "mse", "--sharpness-every", "2", "--hidden-sizes", "16",
                 "--activation", "tanh", "--steps", "5", "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out)
    assert df.columns[-1] == "sharpness"
    assert df["sharpness"].notna().tolist() == [True, False, True, False, True]
    side = json.loads((tmp_path / "eos.csv.events.json").read_text())
    assert side["config"]["batch_size"] == 0 and side["config"]["loss"] == "mse"
    last = df["sharpness"].iloc[4]
    assert f"sharpness {last:.3g} at step 4 (2/lr = 200)" in capsys.readouterr().err  # lr 0.01


@pytest.mark.parametrize("command", ["run", "sweep", "config"])
def test_help_prints_every_flag_even_one_whose_help_has_a_percent_sign(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert e.value.code == 0 and "adds under 10% to a run" in out  # argparse reads a bare % as a format
