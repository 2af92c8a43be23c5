"""P2 and P3: the trainer's speed while the dashboard is open and refreshing, and how stale the page is.

P2 alternates two blocks. Dashboard: ``serve.py`` served by ``streamlit run`` (through ``bench.traced``, which
timestamps every recorded step), a fresh page in headless Chromium, Start pressed, the step rate measured
from the server's timestamps over a window after a warm-up, then Stop. CLI: ``python -m training run`` of
the same configuration headless, in its own process, its step rate measured the same way over the middle
of the run. The figure is dashboard rate ÷ CLI rate per pair.

P3, measured during the dashboard blocks: for every step k recorded in the window, the time from the
server recording it (``Run.record`` returned) to the page first showing a step count of at least k in its
status line (a MutationObserver in the page logs each new count with ``Date.now()``; both clocks are this
machine's wall clock). The p95 over those steps is a block's figure. The refresh period alone makes a step
wait up to one period.

A third row, without browser or Streamlit, says how much of P2 is the server's own refresh work: a trainer
thread stepping alone, alternated with the same thread while another thread of the same process does the live
view's work on the lab page's schedule (the status line's poll: a light snapshot and its text as JSON; each
streaming chart's poll: Run.tail and the rows after its cursor; the theory chart whole, on its period). Both
threads share the GIL, as the app's training thread and its script thread do.

In the same dashboard blocks, with a page tall enough that every live chart is on screen and streaming: P3', each
chart's staleness (step recorded -> that step in the data plotly.js drew, p95; bench/page_probe.py), P6, the
bytes per second the live routes send the page (resource timing, headers included), and P7, the browser's CPU
cores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import Row, alternate, row
from .page_probe import PAGE_JS, PER_LAYER, bytes_per_s, chart_staleness, staleness
from .traced import read_trace

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 2600}  # tall: every live chart of the lab is on screen, so all stream
STEPS = 1_000_000  # the dashboard run's length: it is stopped after each block
CLI_STEPS = 2500
WARMUP_S = 2.0  # after Start: first refreshes, allocator and caches settle
FALLBACK_REFRESH_S = 0.5  # when the lab page does not say its refresh periods
START_TIMEOUT_S = 60.0
EXTRA = os.environ.get("GEL_BENCH_STREAMLIT_ARGS", "").split()  # e.g. "--runner.postScriptGC false", to try a setting

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"streamlit did not become healthy in {START_TIMEOUT_S:.0f} s")


def _rate(samples: list[tuple[int, float]]) -> float | None:
    """Steps per second between the first and last (steps, time) sample."""
    if len(samples) < 2 or samples[-1][1] <= samples[0][1]:
        return None
    return (samples[-1][0] - samples[0][0]) / (samples[-1][1] - samples[0][1])


def _cpu_seconds() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds so far) for every process this user can read."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(d)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return out


def _descendants(procs: dict[int, tuple[int, float]], root: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


@dataclass
class Block:
    """What one dashboard block measured: steps/s, the status line's and each chart's wait per step (s), (server,
    browser) CPU cores, and (all, per route) bytes/s from the live routes to the page."""

    cores: tuple[float, float]
    bytes_per_s: tuple[float, dict[str, float]]
    rate: float | None = None
    stale: list[float] = field(default_factory=list)
    charts: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""


class Dashboard:
    """The app (``serve.py``) served with step timestamps, and a headless Chromium to open it."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.trace = tmp / "server.trace"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "server.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GEL_DATA_DIR": str(tmp / "data")}
        # No file watcher: an edit elsewhere in the tree must not reload the app mid-run.
        cmd = [sys.executable, "-m", "bench.traced", "serve", str(self.trace), "--", "serve.py",
               "--server.headless", "true", "--server.port", str(self.port), "--server.address", "127.0.0.1",
               "--server.fileWatcherType", "none", *EXTRA]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        _wait_healthy(self.url, self.proc, self.log)
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

    def close(self) -> None:
        try:
            self.browser.close()
            self._pw.stop()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def block(self, measure_s: float) -> Block:
        """Open a fresh page, Start, measure what the page and the server recorded in the window."""
        context = self.browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        try:
            page.add_init_script(PAGE_JS)
            start = page.locator(".st-key-btn_start button").first
            for attempt in (1, 2):  # a page that never drew its sidebar (a busy machine) gets one reload
                page.goto(f"{self.url}/?steps={STEPS}")
                try:
                    start.wait_for(state="visible", timeout=START_TIMEOUT_S * 1000 / 2)
                    break
                except Exception:  # noqa: BLE001 - playwright's TimeoutError
                    if attempt == 2:
                        raise
            page.wait_for_timeout(500)  # let the first script run finish drawing
            before = {r for r, _, _ in read_trace(str(self.trace))}
            start.click()
            page.wait_for_timeout(WARMUP_S * 1000)
            t0, cpu0 = time.time(), _cpu_seconds()
            page.wait_for_timeout(measure_s * 1000)
            t1, cpu1 = time.time(), _cpu_seconds()
            page.wait_for_timeout(1000)  # steps of the window's end still reach the page
            seen, charts, sizes = page.evaluate("[window.__gelSeen, window.__gelCharts, window.__gelBytes]")
            page.locator(".st-key-btn_stop button").first.click()
            page.wait_for_timeout(500)
        finally:
            page.close()
            context.close()
        time.sleep(2 * 0.1)  # the trace flushes every 0.1 s
        out = Block(cores=self._cores(cpu0, cpu1, t1 - t0), bytes_per_s=bytes_per_s(sizes, t0, t1))
        rows = [r for r in read_trace(str(self.trace)) if r[0] not in before]
        runs = {r for r, _, _ in rows}
        if len(runs) != 1:
            out.note = f"expected one new run in the trace, found {len(runs)}"
            return out
        window = [(s, t) for _, s, t in rows if t0 <= t <= t1]
        out.rate, out.charts = _rate(window), chart_staleness(window, charts)
        out.stale = staleness(window, [(t / 1000.0, int(v)) for t, v in seen])
        if not out.stale:
            out.note = "the page never showed a step count (.st-key-status 'step N /')"
        return out

    def _cores(self, cpu0: dict, cpu1: dict, seconds: float) -> tuple[float, float]:
        """CPU cores used in the window by the server process, and by everything else this process started
        (the browser and its driver)."""
        def used(pids):
            return sum(cpu1[p][1] - cpu0[p][1] for p in pids if p in cpu0 and p in cpu1)

        mine = _descendants(cpu1, os.getpid())
        server = {self.proc.pid} | _descendants(cpu1, self.proc.pid)
        return used(server) / seconds, used(mine - server) / seconds


def cli_block(tmp: Path, steps: int) -> float | None:
    trace = tmp / "cli.trace"
    cmd = [sys.executable, "-m", "bench.traced", "cli", str(trace), "--", "run", "--steps", str(steps),
           "--out", str(tmp / "cli.csv"), "--quiet"]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "GEL_DATA_DIR": str(tmp / "data")})
    rows = [(s, t) for _, s, t in read_trace(str(trace))]
    lo, hi = int(0.15 * len(rows)), int(0.95 * len(rows))  # skip the start-up steps and the end
    return _rate(rows[lo:hi])


def refresh_schedule() -> tuple[float, float, float]:
    """The lab page's periods: the status line's poll, the streaming charts' polls, the theory charts (seconds)."""
    try:
        from components import live, live_status
        from components import page_lab as L

        return live_status.POLL_S, live.STREAM_S, L.DETAIL_REFRESH_S
    except (ImportError, AttributeError):
        return (FALLBACK_REFRESH_S,) * 3


def server_refresh_vs_alone(pairs: int, block_s: float) -> tuple[list[float], str]:
    """Trainer steps/s with the live view's server work on another thread ÷ steps/s alone, per pair."""
    import torch

    from components import live_figures as LF
    from components import live_rows as LR
    from components.live_status import run_status
    from training.config import Config
    from training.runner import Run

    torch.set_num_threads(1)
    run = Run(Config(steps=10_000_000), device="cpu")  # the dashboard's default run: probes every 10 steps
    status_s, _, detail_s = refresh_schedule()

    def train() -> float:
        t, n = run.trainer, 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < block_s:
            run.record(t.step())
            n += 1
        return n / (time.perf_counter() - t0)

    held: dict[str, int] = {}  # chart key -> the newest step the page would hold

    def views(tick: int) -> None:
        snap = run.snapshot(history=False)  # the status line's poll: a light snapshot, its text as JSON
        json.dumps(run_status(snap))
        for key in LF.STREAM_KEYS + LF.NOW_KEYS:  # each chart's poll: the rows after its cursor
            tail = run.tail(held.get(key, 0))
            if LR.since(key, [tail], [held.get(key, 0)], LF.view_of(key, [tail])) is None:
                LR.whole(key, [run.snapshot()])
            held[key] = max(held.get(key, 0), LF.newest_step(key, tail))
        if tick % round(detail_s / status_s) == 0:  # the theory chart, whole, on its period
            LR.whole("chart_theory", [run.snapshot()])
        del snap

    def with_refresh() -> float:
        stop = threading.Event()

        def loop():
            tick = 0
            while not stop.is_set():
                t0 = time.perf_counter()
                views(tick)
                tick += 1
                stop.wait(max(status_s - (time.perf_counter() - t0), 0.0))

        th = threading.Thread(target=loop, name="bench-refresh", daemon=True)
        th.start()
        try:
            return train()
        finally:
            stop.set()
            th.join()

    for _ in range(12):  # a history, a latest record and a probe for the figures
        run.record(run.trainer.step())
    views(0)  # warm: imports, plotly validators
    ratios = [b / a for a, b in alternate(train, with_refresh, pairs)]
    return ratios, (f"status and 6 charts' rows polled every {status_s:g} s, the theory chart whole every "
                    f"{detail_s:g} s")


def _diag(pairs: int, block_s: float) -> tuple[list[float], str, str, str]:
    ratios, schedule = server_refresh_vs_alone(pairs, block_s)
    return ratios, "x", "-", schedule


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


P3_WHAT = "staleness: step recorded -> shown in the page, p95"
CHART_ROWS = (("P3'", "chart staleness, p95: loss", ("chart_loss",)),
              ("P3'", "chart staleness, p95: gradient norm", ("chart_grad",)),
              ("P3'", "chart staleness, p95: per-layer, worst of heatmap, flow, weights", PER_LAYER))
P6_WHAT, P7_WHAT = "bytes/s from the live routes to the page, run at full speed", "browser CPU (cores) while streaming"


def _skipped(why: str) -> list[Row]:
    return [row("P2", "trainer steps/s, dashboard open ÷ headless CLI", None, "x", ">= 0.90", why),
            row("P3", P3_WHAT, None, "s", "<= 0.5", why),
            *(row(i, what, None, "s", "<= 0.5", why) for i, what, _ in CHART_ROWS),
            row("P6", P6_WHAT, None, "kB/s", "-", why), row("P7", P7_WHAT, None, "cores", "-", why)]


def _p95(waits: list[float]) -> float | None:
    return float(np.percentile(waits, 95)) if waits else None


def _chart_rows(blocks: list[Block]) -> list[Row]:
    """P3', P6 and P7 from the dashboard blocks: each block's p95 wait per chart (the worst chart of a group),
    its bytes/s and its browser's CPU."""
    out = []
    for id_, what, keys in CHART_ROWS:
        per = [[_p95(b.charts.get(k, [])) for k in keys] for b in blocks]
        values = [max(v) for v in per if v and None not in v]
        never = sorted({k for b in blocks for k in keys if not b.charts.get(k)})
        note = f"never drawn a step of the window: {', '.join(never)}" if never else ""
        out.append(row(id_, what, values, "s", "<= 0.5", note))
    routes: dict[str, list[float]] = {}
    for b in blocks:
        for k, v in b.bytes_per_s[1].items():
            routes.setdefault(k, []).append(v / 1000)
    split = ", ".join(f"{k} {np.median(v):.1f}" for k, v in sorted(routes.items()))
    out.append(row("P6", P6_WHAT, [b.bytes_per_s[0] / 1000 for b in blocks], "kB/s", "-", f"per route: {split}"))
    out.append(row("P7", P7_WHAT, [b.cores[1] for b in blocks], "cores", "-", f"viewport {VIEWPORT}"))
    return out


def run(quick: bool = False) -> list[Row]:
    diag = row("P2", "  server's live-view work on another thread (no browser) ÷ alone",
               *_diag(2 if quick else 6, 2.0 if quick else 4.0))
    if quick:
        return [*_skipped("skipped with --quick"), diag]
    if not os.access(CHROMIUM, os.X_OK):
        return [*_skipped(f"no Chromium at {CHROMIUM}"), diag]
    pairs, measure_s = 4, 6.0
    ratios, notes, blocks, cli_rates = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="gel-bench-") as d:
        tmp = Path(d)
        try:
            dash = Dashboard(tmp)
        except Exception as e:  # noqa: BLE001 - report why, never a made-up number
            return [*_skipped(_one_line(f"dashboard did not start: {type(e).__name__}: {e}")), diag]
        try:
            for _ in range(pairs):
                b = dash.block(measure_s)
                c_rate = cli_block(tmp, CLI_STEPS)
                blocks.append(b)
                cli_rates += [c_rate] if c_rate else []
                if b.note:
                    notes.append(_one_line(b.note))
                if b.rate and c_rate:
                    ratios.append(b.rate / c_rate)
        except Exception as e:  # noqa: BLE001
            notes.append(_one_line(f"{type(e).__name__}: {e}"))
        finally:
            dash.close()
    dash_rates = [b.rate for b in blocks if b.rate]
    rate_note = (f"dashboard {np.median(dash_rates):.0f}, CLI {np.median(cli_rates):.0f} steps/s"
                 if dash_rates and cli_rates else "")
    if blocks:
        server, browser = np.median([b.cores for b in blocks], axis=0)
        rate_note += f"; CPU cores in use: server {server:.2f}, browser {browser:.2f}"
    stale = [b.stale for b in blocks if b.stale]
    med = f"median wait {np.median([np.median(s) for s in stale]):.2f} s" if stale else ""
    return [row("P2", "trainer steps/s, dashboard open ÷ headless CLI", ratios, "x", ">= 0.90",
                "; ".join(x for x in [rate_note, *sorted(set(notes))] if x)),
            diag,
            row("P3", P3_WHAT, [_p95(s) for s in stale], "s", "<= 0.5", med),
            *_chart_rows(blocks)]
