import json
import subprocess
import sys

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
])
def test_bad_flags_exit_2_with_one_line(argv, needle, tmp_path, capsys):
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "x.csv")] if argv[0] == "run" else argv
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err


def test_bad_flag_in_a_real_process_exits_2_without_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "training", "run", "--batch-size", "0", "--out", str(tmp_path / "a.csv")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == "error: --batch-size: 0 is not allowed; allowed: 1 to 4096"
