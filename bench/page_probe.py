"""What the benchmark page records about itself (P3, P3', P6): scripts added to a fresh page before it loads, and
how their logs turn into figures. Every log entry carries ``Date.now()``, this machine's wall clock, which the
server's step trace (bench/traced.py) uses too.
"""

from __future__ import annotations

import numpy as np

# Logs [Date.now(), step count] each time the status line shows a new count (skipping stale copies).
STATUS_JS = r"""
window.__gelSeen = [];
(() => {
  let last = -1;
  const check = () => {
    for (const el of document.querySelectorAll('.st-key-status')) {
      if (el.closest('[data-stale="true"]')) continue;
      const m = /step\s+([\d,]+)\s*\//.exec(el.textContent || '');
      if (!m) continue;
      const v = parseInt(m[1].replace(/,/g, ''), 10);
      if (v !== last) { last = v; window.__gelSeen.push([Date.now(), v]); }
    }
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, characterData: true});
})();
"""

# Logs [Date.now(), chart key, newest step drawn] each time a live chart finishes a drawing (its data-drawn
# attribute moves). The newest step is read from what plotly.js drew (_fullData): the largest numeric x among
# the traces' last points, or for a chart whose x axis is not steps (gradient flow) the step its title names.
CHARTS_JS = r"""
window.__gelCharts = [];
(() => {
  const newest = (d) => {
    let best = -1;
    for (const t of d._fullData || []) {
      const xs = t.x;
      if (!xs || !xs.length) continue;
      for (let i = xs.length - 1; i >= 0 && i >= xs.length - 8; i--) {
        if (typeof xs[i] === 'number' && Number.isFinite(xs[i])) { best = Math.max(best, xs[i]); break; }
      }
    }
    if (best < 0) {
      const m = /step (\d+)/.exec(((d.layout || {}).title || {}).text || '');
      if (m) best = Number(m[1]);
    }
    return best;
  };
  new MutationObserver((changes) => {
    for (const c of changes) {
      const d = c.target;
      const host = d.closest && d.closest('[class*="st-key-chart_"]');
      if (!host || host.closest('[data-stale="true"]')) continue;
      const key = [...host.classList].find((k) => k.startsWith('st-key-chart_')).slice(7);
      window.__gelCharts.push([Date.now(), key, newest(d)]);
    }
  }).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-drawn']});
})();
"""

# Logs [Date.now(), route, bytes] for every answer of the live routes (/api/...): the bytes on the wire, headers
# included, as the browser's resource timing counts them.
BYTES_JS = r"""
window.__gelBytes = [];
(() => {
  performance.setResourceTimingBufferSize(1000000);
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const m = /\/api\/(\w+)(?:\/(\w+))?/.exec(e.name);
      if (m) window.__gelBytes.push([Date.now(), m[1] === 'chart' ? m[2] : m[1], e.transferSize]);
    }
  }).observe({type: 'resource', buffered: true});
})();
"""

PAGE_JS = STATUS_JS + CHARTS_JS + BYTES_JS
STREAMING = ("chart_loss", "chart_grad", "chart_heatmap", "chart_flow", "chart_weights")  # P3' charts
PER_LAYER = ("chart_heatmap", "chart_flow", "chart_weights")


def staleness(server: list[tuple[int, float]], seen: list[tuple[float, int]]) -> list[float]:
    """For each recorded step (count c at time t), the wait until the page first shows a count >= c."""
    if not seen:
        return []
    t_seen = np.array([t for t, _ in seen])
    v_seen = np.maximum.accumulate(np.array([v for _, v in seen]))
    out = []
    for c, t in server:
        i = int(np.searchsorted(v_seen, c))  # first observation showing at least c
        if i < len(v_seen):
            out.append(t_seen[i] - t)
    return out


def chart_staleness(server: list[tuple[int, float]], charts: list) -> dict[str, list[float]]:
    """Per chart key, the wait of each recorded step until that chart draws it (a chart draws step k, the
    server counts k + 1 steps)."""
    out = {}
    for key in STREAMING:
        drawn = [(t / 1000.0, int(step) + 1) for t, k, step in charts if k == key and step >= 0]
        out[key] = staleness(server, drawn)
    return out


def bytes_per_s(log: list, t0: float, t1: float) -> tuple[float, dict[str, float]]:
    """Bytes per second from the live routes to the page between t0 and t1 (seconds), in all and per route."""
    per: dict[str, float] = {}
    for t, route, size in log:
        if t0 <= t / 1000.0 <= t1:
            per[route] = per.get(route, 0.0) + size / (t1 - t0)
    return sum(per.values()), per
