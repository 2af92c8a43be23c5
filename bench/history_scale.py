"""P4: a 1,000,000-step history. Memory it holds, server time to draw every dashboard chart from it, and whether
a single-step spike planted at a random step is still in the decimated chart.

The history has the reference model's columns (29) and the runner's default size (2048 recent rows, 2048
buckets). Chart time is what one dashboard refresh costs the server: the run snapshot (a copy of the
decimated view under the run's lock), the six figures the live view draws, and their JSON encoding, which
``st.plotly_chart`` does for every chart it sends.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import plotly.io as pio

from training.history import History
from training.runner import Run

from . import Row, row
from .step_overhead import REFERENCE

SPIKE = 1000.0  # times the largest ordinary value of its column
RECENT, BUCKETS = 2048, 2048  # the runner's default History size


def build_history(hist: History, n: int, rng: np.random.Generator, spike_at: int, column: str) -> tuple[float, float]:
    """Append ``n`` rows of plausible values, one spike at ``spike_at``; return (its value, seconds per append)."""
    col = hist.col[column]
    chunk = 10_000
    t_append, spike = 0.0, float("nan")
    for start in range(0, n, chunk):
        rows = np.exp(rng.normal(0.0, 0.3, size=(min(chunk, n - start), len(hist.columns))))  # ~1, lognormal
        if start <= spike_at < start + chunk:
            spike = rows[spike_at - start, col] = SPIKE * rows[:, col].max()
        t0 = time.perf_counter()
        for i, r in enumerate(rows):
            hist.append(start + i, r)
        t_append += time.perf_counter() - t0
    return spike, t_append / n


def overlay_figures(snap) -> list:
    """The live view's loss and gradient-norm charts (components.charts), as the lab page draws them."""
    from components import charts as C

    return [C.loss_figure([snap]), C.grad_norm_figure([snap])]


def detail_figures(snap) -> list:
    """The live view's four per-layer charts (components.charts), as the lab page draws them for one run."""
    from components import charts as C

    rec = snap.latest
    return [C.layer_heatmap(snap), C.gradient_flow_figure(snap.names, {snap.label: rec.grad_norms}, rec.step),
            C.weights_updates_figure(snap), C.probe_figure(snap.probes[-1])]


def dashboard_figures(snap) -> tuple[list, str]:
    """Every live-view figure; equivalent plain Plotly figures from the same view when the dashboard's chart
    functions are unavailable (the source says which)."""
    try:
        return overlay_figures(snap) + detail_figures(snap), "components.charts"
    except Exception as e:  # noqa: BLE001 - the dashboard is still changing; fall back and say so
        return _plain_figures(snap), f"plain Plotly ({type(e).__name__} from components.charts)"


def _plain_figures(snap) -> list:
    import plotly.graph_objects as go

    v, cols = snap.view, snap.columns
    figs = []
    per_param = [[c for c in cols if c.startswith(k)] for k in ("weight_norm/", "update_ratio/")]
    for group in (["loss"], ["grad_norm_pre_clip", "grad_norm_post_clip"], *per_param):
        fig = go.Figure()
        for c in group:
            i = cols.index(c)
            fig.add_trace(go.Scatter(x=v["step"], y=v["hi"][:, i], mode="lines", line={"width": 0}))
            fig.add_trace(go.Scatter(x=v["step"], y=v["lo"][:, i], mode="lines", fill="tonexty", line={"width": 0}))
            fig.add_trace(go.Scatter(x=v["step"], y=v["value"][:, i], mode="lines", name=c))
        figs.append(fig)
    g = v["hi"][:, [cols.index(c) for c in cols if c.startswith("grad_norm/")]].T
    figs.append(go.Figure(go.Heatmap(x=v["step"], y=list(range(len(g))), z=np.log10(g))))
    figs.append(go.Figure(go.Bar(y=snap.latest.grad_norms)))
    return figs


def refresh(run: Run) -> tuple[tuple[float, float, float], list, str]:
    """One refresh's server work: seconds to (snapshot, build the figures, JSON-encode them), figures, source."""
    t0 = time.perf_counter()
    snap = run.snapshot()
    t1 = time.perf_counter()
    figs, source = dashboard_figures(snap)
    t2 = time.perf_counter()
    for f in figs:
        pio.to_json(f, validate=False)
    return (t1 - t0, t2 - t1, time.perf_counter() - t2), figs, source


def spike_visible(figs: list, value: float) -> bool:
    """Some trace of some figure has the spike's exact value among its y values."""
    for f in figs:
        for tr in f.data:
            y = getattr(tr, "y", None)
            if y is not None and np.any(np.asarray(y, dtype=float) == value):
                return True
    return False


def run(quick: bool = False) -> list[Row]:
    n = 100_000 if quick else 1_000_000
    repeats = 5 if quick else 21
    rng = np.random.default_rng()
    seed = int(rng.integers(2**31))
    rng = np.random.default_rng(seed)
    r = Run(REFERENCE.replace(probe_every=1), device="cpu")
    r.record(r.trainer.step())  # a real latest record and probe for the per-step charts
    columns, column = r.history.columns, "grad_norm_pre_clip"
    spike_at = int(rng.integers(0, n - RECENT))  # among the decimated rows, not the full-resolution tail

    # Held memory: what a history of the runner's default size keeps allocated (tracemalloc sees numpy's buffers).
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    probe_hist = History(columns)
    build_history(probe_hist, min(n, 4 * (RECENT + BUCKETS)), rng, 0, column)  # past the first merges
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del probe_hist

    r.history = History(columns)
    spike, per_append = build_history(r.history, n, rng, spike_at, column)
    nbytes = r.history.nbytes()
    view = r.history.view()
    hi = view["hi"][:, r.history.col[column]]
    bucket = int(np.searchsorted(view["step"], spike_at))  # buckets are drawn at their last step
    in_view = bool(hi[bucket] == spike and view["step"][bucket] != spike_at)  # kept, and in a decimated bucket

    refresh(r)  # warm: imports, plotly validators
    parts, figs, source = [], [], ""
    for _ in range(repeats):
        t, figs, source = refresh(r)
        parts.append([x * 1e3 for x in t])
    snap_ms, fig_ms, json_ms = (float(np.median(x)) for x in zip(*parts, strict=True))
    visible = in_view and spike_visible(figs, spike)
    note = f"{n:,} rows, {len(r.history.columns)} columns, {len(view['step']):,} drawn"
    return [
        row("P4", "history memory: History.nbytes()", [nbytes / 1e6], "MB", "<= 100", note),
        row("P4", "history memory: held per tracemalloc", [held / 1e6], "MB", "<= 100",
            f"append {per_append * 1e6:.1f} us/row"),
        row("P4", f"chart refresh: snapshot + {len(figs)} figures + JSON", [sum(p) for p in parts], "ms", "<= 50",
            f"snapshot {snap_ms:.1f}, figures {fig_ms:.0f}, JSON {json_ms:.0f} ms ({source})"),
        row("P4", f"{SPIKE:g}x spike at random step in decimated chart", [float(visible)], "yes/no", "yes",
            f"step {spike_at:,} (seed {seed})"),
    ]
