"""A local sweep's processes: its workers end when the sweep's process is killed, and --workers is capped by the
cores and the memory, refused in one line above that."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.apptest_helpers import wait_until
from training import cli, pools
from training import sweep as SW
from training.config import Config

REPO = Path(__file__).resolve().parent.parent
linux_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table in /proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]  # the name in parentheses may hold spaces
    return state, int(ppid)


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            s = _stat(int(entry))
            if s is not None and s[1] == pid:
                out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    s = _stat(pid)
    return s is not None and s[0] != "Z"  # a zombie has ended; only its exit status waits to be collected


@linux_proc
def test_kill_9_of_a_local_sweep_ends_its_workers_and_resource_tracker(tmp_path):
    # Cells long enough that none finishes while the test runs: only the parent's death can end the workers.
    proc = subprocess.Popen([sys.executable, "-m", "training", "sweep", "--x", "lr=0.01,0.1", "--y", "depth=1,2",
                             "--steps", "1000000", "--workers", "2", "--quiet", "--out", str(tmp_path / "m.csv")],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kids: set[int] = set()
    try:

        def three_children() -> bool:  # two spawned workers and multiprocessing's resource tracker
            assert proc.poll() is None, proc.stderr.read().decode()
            kids.update(_children(proc.pid))
            return len(kids) >= 3

        wait_until(three_children, 90, "the sweep's three child processes", every=0.2)
        time.sleep(1.0)  # the workers are past their start-up and into a cell
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: not any(_alive(k) for k in kids), 10,
                   f"the sweep's {len(kids)} child processes to end with it", every=0.1)
    finally:
        for k in kids:  # only the processes this test started
            if _alive(k):
                os.kill(k, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()


def test_workers_above_the_cores_are_refused_with_the_range(capsys):
    hi, why = SW.max_workers()
    assert 1 <= hi <= (os.cpu_count() or 1) and "CPU cores" in why
    argv = ["sweep", "--x", "lr=0.01,0.1", "--y", "depth=1,2", "--out", "m.csv", "--workers"]
    assert cli.main([*argv, str(hi + 10)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --workers: {hi + 10} is not allowed; allowed: 1 to {hi} here (") and \
        len(err.strip().splitlines()) == 1
    assert cli.main([*argv, "0"]) == 2 and "allowed: 1 to" in capsys.readouterr().err


def test_workers_are_capped_by_the_memory_too(monkeypatch):
    monkeypatch.setattr(pools, "_available_memory", lambda: pools.WORKER_BYTES + 100)
    assert SW.max_workers()[0] == 1 and "GiB of memory available" in SW.max_workers()[1]
    sweep = SW.Sweep(Config(hidden_sizes=(8,), dataset="gaussian", batch_size=8), "lr=0.01,0.1", "depth=1,2",
                    steps=2)
    with pytest.raises(SW.WorkersError, match=r"workers: 2 is not allowed; allowed: 1 to 1 here"):
        sweep.run("local", workers=2)
    monkeypatch.setattr(pools, "_available_memory", lambda: None)  # unknown: the cores alone
    assert SW.max_workers()[0] == (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                  else os.cpu_count())
    with pytest.raises(SW.WorkersError, match="allowed: 1 or more"):
        sweep.run("ray", workers=0)
