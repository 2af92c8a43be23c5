"""S1-S5: the server under abuse and large models. Each measurement runs in a fresh Python process, so memory
figures are the process's own RSS and nothing one leaves behind weighs on the next.

- S1: one ``GET /api/chart`` naming one finished run 1,000 times in ``runs`` and in ``extra`` (~24 KB of query):
  RSS growth (peak during the request and kept after it) and answer time.
- S2: Stop latency on the largest MLP and LSTMs the step-cost cap allows (training/config.py): from ``stop()`` to
  the training thread's end, at random moments and once right after the start (the first step probes and
  evaluates: the costliest). Judged on the worst stop.
- S3: RSS growth after 10 ended one-step Adam runs of the largest allowed MLP.
- S4: the first Start of a fresh process (AppTest: the page, then Start, until a step is drawn), after the
  server's warm-up, beside the same without it.
- S5: the longest stall of an event loop that looks runs up (as the live route does; /_stcore/health is served
  by the same loop) while a Start builds the largest allowed MLP and takes its step.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from . import Row, check, row

REPO = Path(__file__).resolve().parent.parent

PRELUDE = """
import json, os, random, sys, threading, time
import torch
torch.set_num_threads(1)

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
"""

CHART = PRELUDE + """
from bench.asgi import get
from components import live_api
from training.config import Config

from training.manager import get_manager
runner = get_manager().start(Config(steps=int(sys.argv[1])))
runner.wait()
rid = runner.id
url = live_api.chart_url("chart_loss", [rid] * 1000, [rid] * 1000)
get(live_api.chart_url("chart_loss", [rid]))  # warm: imports, plotly validators
out = []
for _ in range(3):
    base = rss_mb(); reset_peak()
    t0 = time.perf_counter(); code, body, _ = get(url); dt = time.perf_counter() - t0
    assert code == 200, body
    del body
    out.append({"s": dt, "peak": peak_mb() - base, "kept": rss_mb() - base, "query": len(url)})
print(json.dumps(out))
get_manager().shutdown()
"""

LARGEST = """
from training.config import Config, ConfigError, max_batch_size

def largest_mlp():
    c = Config(hidden_sizes=(4096, 4096, 4096), batch_size=1)
    return c.replace(batch_size=max_batch_size(c))

def largest_lstm(seq_len=50):
    h = 1
    while True:  # the widest hidden size allowed at batch 1, then the largest batch for it
        try:
            Config(model="lstm", dataset="adding", seq_len=seq_len, hidden_size=h + 1, batch_size=1)
        except ConfigError:
            break
        h += 1
    c = Config(model="lstm", dataset="adding", seq_len=seq_len, hidden_size=h, batch_size=1)
    return c.replace(batch_size=max_batch_size(c))
"""

STOP = PRELUDE + LARGEST + """
from training.runner import Runner
cfg = {"mlp": largest_mlp, "lstm": largest_lstm, "lstm-500": lambda: largest_lstm(500)}[sys.argv[1]]()
cfg = cfg.replace(steps=10_000_000)
out = []
for i in range(int(sys.argv[2])):
    r = Runner(cfg, device="cpu")
    r.start()
    time.sleep(0.05 if i == 0 else random.uniform(0.5, 3.0))  # the first: inside the probing, evaluating step 0
    t0 = time.perf_counter()
    assert r.stop(timeout=120)
    out.append({"s": time.perf_counter() - t0, "step": r.runs[0].history.total})
print(json.dumps({"cfg": {k: v for k, v in cfg.to_dict().items() if k in ("hidden_sizes", "hidden_size", "seq_len",
                                                                         "batch_size", "model")},
                  "stops": out}))
"""

ENDED = PRELUDE + LARGEST + """
import gc
from training.manager import RunManager
m = RunManager(idle_pause_s=0, max_running=1)
cfg = largest_mlp().replace(optimizer="adam", steps=1)
base = rss_mb()
for _ in range(int(sys.argv[1])):
    assert m.start(cfg).wait(300)
gc.collect()
print(json.dumps({"grown": rss_mb() - base, "runs": int(sys.argv[1]), "cfg_batch": cfg.batch_size}))
m.shutdown()
"""

BUILD = PRELUDE + LARGEST + """
import asyncio
from training.manager import RunManager
m = RunManager(idle_pause_s=0)
gaps = []

async def main():
    # The event loop that serves /_stcore/health, looking runs up as the live route does, while a Start builds
    done = threading.Event()
    def start():
        m.start(largest_mlp().replace(steps=1)).wait()
        done.set()
    threading.Thread(target=start).start()
    last = time.perf_counter()
    while not done.is_set():
        await asyncio.sleep(0.01)
        m.get("r-none")
        now = time.perf_counter()
        gaps.append(now - last - 0.01)
        last = now

from components import live_api  # the server has imported these before any Start
live_api.warm_up()
asyncio.run(main())
print(json.dumps({"worst": max(gaps), "ticks": len(gaps)}))
m.shutdown()
"""

FIRST_START = PRELUDE + """
warm = sys.argv[1] == "warm"
t_import = time.perf_counter()
from components import live_api  # what serve.py imports as the server starts
if warm:
    t = threading.Thread(target=live_api.warm_up, name="warm-up", daemon=True)
    t.start()
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[2], default_timeout=120)
at.run()  # the first page
if warm:
    t.join()
warmed = time.perf_counter() - t_import
start = next(b for b in at.button if "Start" in (b.label or ""))
t0 = time.perf_counter()
start.click().run()
from training.manager import get_manager
while not any(r.runs[0].history.total for r in get_manager().runners()):
    time.sleep(0.01)
at.run()  # the rerun that draws the first step
print(json.dumps({"s": time.perf_counter() - t0, "warmed_after": warmed}))
get_manager().shutdown()
"""


def _python(code: str, *args: str, timeout: float = 900) -> dict | list | None:
    """Run ``code`` in a fresh interpreter with its own run store; its last line of output, as JSON."""
    with tempfile.TemporaryDirectory(prefix="gel-bench-") as data:
        env = {**os.environ, "PYTHONPATH": str(REPO), "GEL_DATA_DIR": data}
        r = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                           timeout=timeout, env=env)
    if r.returncode != 0:
        print(r.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def _worst(id: str, what: str, values: list[float], unit: str, target: str, note: str) -> Row:
    """A row judged on its largest value: a Stop is as slow as its slowest landing."""
    if not values:
        return Row(id, what, None, None, None, unit, target, None, note)
    return Row(id, what, statistics.median(values), min(values), max(values), unit, target,
               check(max(values), target), note)


def _row(id: str, what: str, values: list[float], unit: str, target: str, note: str = "") -> Row:
    return row(id, what, values or None, unit, target, note)


def run(quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    chart = _python(CHART, "300" if quick else "5000") or []
    rows.append(_row("S1", "RSS growth, /api/chart naming one run 1,000 times (peak)", [c["peak"] for c in chart],
                     "MB", "<= 50", f"kept after: {max((c['kept'] for c in chart), default=float('nan')):.1f} MB; "
                                    f"query {chart[0]['query'] if chart else '?'} chars"))
    rows.append(_row("S1", "answer time of that request", [c["s"] for c in chart], "s", "<= 1.0"))
    for model, what in (("mlp", "MLP"), ("lstm", "LSTM, length 50"), ("lstm-500", "LSTM, length 500")):
        out = _python(STOP, model, "1" if quick else "6")
        stops = out["stops"] if out else []
        rows.append(_worst("S2", f"Stop latency, largest allowed {what}", [s["s"] for s in stops], "s",
                           "<= 1.0", f"worst of {len(stops)} stops; {out['cfg'] if out else 'failed'}"))
    ended = _python(ENDED, "3" if quick else "10")
    rows.append(_row("S3", f"RSS held by {ended['runs'] if ended else '?'} ended largest-MLP Adam runs",
                     [ended["grown"]] if ended else [], "MB", "<= 1000",
                     f"4096-4096-4096, batch {ended['cfg_batch']}" if ended else "failed"))
    build = [b for b in (_python(BUILD) for _ in range(1 if quick else 3)) if b]
    rows.append(_row("S5", "longest event-loop stall while the largest allowed MLP builds and trains",
                     [b["worst"] for b in build], "s", "<= 1.0", "the loop looks a run up every 10 ms, as the live "
                                                                "route does"))
    app = str(REPO / "app.py")
    warm = [r for r in (_python(FIRST_START, "warm", app) for _ in range(1 if quick else 3)) if r]
    cold = [] if quick else [r for r in (_python(FIRST_START, "cold", app) for _ in range(3)) if r]
    rows.append(_row("S4", "first Start to its first step drawn, after the warm-up", [r["s"] for r in warm], "s",
                     "<= 2.0", f"without the warm-up: {statistics.median([r['s'] for r in cold]):.2f} s"
                     if cold else ""))
    return rows
