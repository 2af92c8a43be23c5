"""`python -m bench --quick` runs and prints its table. Structure only: benchmarks assert no timing."""

import subprocess
import sys

import pytest

from bench import Row, check, table


@pytest.mark.slow
def test_quick_bench_prints_one_row_per_benchmark(repo_root):
    out = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=repo_root, capture_output=True, text=True,
                         timeout=480)  # S1-S4 start a fresh interpreter per measurement
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("date: ") and "torch: " in lines[0] and "cpu: " in lines[0]
    assert lines[1].split()[:8] == ["id", "what", "median", "min", "max", "unit", "target", "meets"]
    ids = {ln.split()[0] for ln in lines[2:-1]}
    assert ids == {"P1", "P2", "P3", "P3'", "P4", "P5", "P6", "P7", "P8", "P9", "C1", "S1", "S2", "S3", "S4",
                   "S5"}
    assert "skipped with --quick" in out.stdout  # the browser benchmarks are not run by --quick
    assert lines[-1].startswith("(") and "median of alternating blocks" in lines[-1]


def test_rows_say_whether_the_median_meets_the_target():
    assert check(1.04, "<= 1.05") and not check(1.06, "<= 1.05")
    assert check(0.95, ">= 0.90") and check(1.0, "yes") is True and check(0.0, "yes") is False
    assert check(None, "<= 1.05") is None and check(3.0, "-") is None
    text = table([Row("P1", "a ratio", 1.02, 1.0, 1.1, "x", "<= 1.05", True, "note")], markdown=True)
    assert text.splitlines()[2] == "| P1 | a ratio | 1.020 | 1.000 | 1.100 | x | <= 1.05 | yes | note |"
