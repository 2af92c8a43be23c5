"""The status line of the live run: state, step, speed, clipping and learning rate, then loss, gradient norms
and test accuracy, for each run of the tab.

A Streamlit fragment rerun costs the page ~60 ms of browser time and the server a script run, even when it
draws nothing (docs/benchmarks.md, P2): rerunning one every 0.3 s to move a step counter cost the training
thread ~10% of its speed. So the line is an element that keeps itself current: while the run is alive it
fetches its numbers from ``GET /api/live/<run id>`` (served beside the app, see ``serve.py``) four times a
second and rewrites its own text; every rerun of the page also hands it a fresh copy. The
numbers are formatted here, in Python, for both paths, so the page shows the same text either way. When the
poll sees a run change state, the element triggers one rerun, which brings the banners and the buttons up to
date.
Where the route is missing (the app served by a bare ``streamlit run app.py``), the status fragment ticks once
a second instead and the line moves at that pace.
"""

from __future__ import annotations

import time

import streamlit as st

from training.registry import describe_clip

from .data import OUTCOME_BADGE, STATE_BADGE, accuracy_label, live_clip, live_lr, run_outcome
from .panels import fmt, latest_test_accuracy
from .plot import base_path
from .theme import run_color

POLL_S = 0.25  # a step waits at most this long (plus the fetch) to show
API_PREFIX = "/api/live/"

# Colours from the active theme (Streamlit gives a v2 element --st-text-color and friends), so the line reads as
# well in dark mode as in light: labels and borders are the text colour made translucent, and each badge's hue is
# mixed with the text colour (darker on a light page, lighter on a dark one).
CSS = """
.gel-status { display: grid; gap: 1rem; font-family: inherit; --gel-text: var(--st-text-color, rgb(49, 51, 63)); }
.gel-status.gel-multi { grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); }
.gel-status.gel-multi .gel-run { border: 1px solid color-mix(in srgb, var(--gel-text) 20%, transparent);
  border-radius: 0.5rem; padding: 1rem; }
.gel-head { line-height: 1.6; margin-bottom: 0.75rem; }
.gel-badge { border-radius: 0.5rem; padding: 0.1em 0.4em; font-size: 0.875em;
  background: color-mix(in srgb, var(--gel-hue) 15%, transparent);
  color: color-mix(in srgb, var(--gel-hue) 55%, var(--gel-text)); }
.gel-badge-gray { --gel-hue: var(--gel-text); }
.gel-badge-blue { --gel-hue: rgb(28, 131, 225); }
.gel-badge-orange { --gel-hue: rgb(255, 164, 33); }
.gel-badge-green { --gel-hue: rgb(33, 195, 84); }
.gel-badge-red { --gel-hue: rgb(255, 43, 43); }
.gel-metrics { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 1rem; }
.gel-multi .gel-metrics { grid-template-columns: repeat(2, minmax(0, 1fr)); }
.gel-label { font-size: 0.875rem; color: color-mix(in srgb, var(--gel-text) 80%, transparent); }
.gel-value { font-size: 2.25rem; line-height: 1.3; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
"""

# Built with textContent only: nothing from the server is parsed as HTML.
JS = r"""
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// The line's nodes are built once per set of runs and then only their text changes: rebuilding them four
// times a second would cost the page a style, layout and paint pass each time.
function build(root, runs) {
  root.className = 'gel-status' + (runs.length > 1 ? ' gel-multi' : '');
  root.__refs = [];
  root.replaceChildren(...runs.map((r) => {
    const box = el('div', 'gel-run');
    const head = el('div', 'gel-head');
    if (r.title) {
      const sq = el('span', '', '■ ');
      sq.style.color = r.color;
      head.append(sq, el('b', '', 'Run ' + r.title), ' · ');
    }
    const refs = {badge: el('span'), step: el('b'), rest: el('span'), values: []};
    head.append(refs.badge, ' · step ', refs.step, refs.rest);
    const metrics = el('div', 'gel-metrics');
    for (const [label] of r.metrics) {
      const value = el('div', 'gel-value');
      const m = el('div', 'gel-metric');
      m.append(el('div', 'gel-label', label), value);
      metrics.append(m);
      refs.values.push(value);
    }
    box.append(head, metrics);
    root.__refs.push(refs);
    return box;
  }));
}

const setText = (node, text) => { if (node.textContent !== text) node.textContent = text; };

function draw(root, status) {
  const shape = status.runs.map((r) => r.title + ' ' + r.color + ' ' + r.metrics.length).join(',');
  if (root.__shape !== shape) {
    build(root, status.runs);
    root.__shape = shape;
  }
  status.runs.forEach((r, i) => {
    const refs = root.__refs[i];
    setText(refs.badge, r.label || r.state);
    refs.badge.className = 'gel-badge gel-badge-' + r.badge;
    setText(refs.step, r.step_text);
    setText(refs.rest, ' / ' + r.steps_text + ' · ' + r.detail);
    r.metrics.forEach(([, value], j) => setText(refs.values[j], value));
  });
}

// Keyed by run id: a tab's next run ends in the same state as its last one ("false:exploded"), and must still
// bring its own banner.
const states = (status) => status.alive + ':' + status.runs.map((r) => r.id + '=' + r.state).join(',');

function show(s, status) {
  if (!status || status.t < s.shown) return;  // an older copy (a slow fetch, or the fragment's) never wins
  s.shown = status.t;
  draw(s.root, status);
  s.root.dataset.step = String(status.runs.map((r) => r.step).join(','));
  s.root.dataset.runs = status.runs.map((r) => r.id).join(',');  // which runs the line shows now, in what state
  s.root.dataset.states = status.runs.map((r) => r.state).join(',');
}

// One loop per status line: a fetch in flight or a timer set means the loop is running.
function poll(s) {
  s.timer = null;
  if (s.stopped || !s.url) return;
  s.inflight = true;
  fetch(s.url, {cache: 'no-store'}).then((r) => {
    if (r.status === 404) { s.url = null; return null; }  // no such route or run: the fragment keeps the line
    return r.ok ? r.json() : null;
  }).catch(() => null).then((status) => {
    s.inflight = false;
    if (s.stopped) return;
    show(s, status);
    if (status && !status.alive) s.url = null;
    // A run of the tab ended, exploded or stopped: one rerun brings its banner, the buttons and the URL.
    if (status && states(status) !== s.rendered && states(status) !== s.asked) ask(s, states(status));
    schedule(s);
  });
}

// Ask for the rerun; if the page has still not drawn that state after ASK_AGAIN_MS (a trigger lost while the
// server was busy, or a rerun that ran before the runner's thread had quite ended), ask again. The polling has
// stopped by then, so nothing else would.
const ASK_AGAIN_MS = 1500;
function ask(s, want) {
  s.asked = want;
  s.changed(true);
  clearTimeout(s.retry);
  s.retry = setTimeout(() => { if (!s.stopped && s.rendered !== want && s.asked === want) ask(s, want); },
                       ASK_AGAIN_MS);
}

function schedule(s) {
  if (s.url && !s.timer && !s.inflight && !s.stopped) s.timer = setTimeout(() => poll(s), s.every);
}

export default function ({ data, parentElement, setTriggerValue }) {
  let s = parentElement.__gelStatus;
  if (!s) {
    s = parentElement.__gelStatus = {shown: -Infinity, timer: null, inflight: false, stopped: false, url: null};
    s.root = el('div', 'gel-status');
    parentElement.appendChild(s.root);
  }
  show(s, data.status);
  s.every = data.every_ms;
  s.rendered = states(data.status);  // what the page's banners were drawn from
  s.changed = (v) => setTriggerValue('changed', v);
  const url = data.status.alive ? data.url : null;
  if (url !== s.url) { clearTimeout(s.timer); s.timer = null; s.url = url; }
  schedule(s);
  return () => { s.stopped = true; clearTimeout(s.timer); clearTimeout(s.retry); };
}
"""

_element = st.components.v2.component("gel_status", html="", css=CSS, js=JS, isolate_styles=False)


def run_status(snap, title: str | None = None, color: str | None = None) -> dict:
    """One run's line as display text (plain strings and ints, JSON-safe: inf and NaN arrive as text)."""
    clip = describe_clip(*live_clip(snap))
    rec = snap.latest
    acc = latest_test_accuracy(snap)
    # An ended run is named by the outcome classifier, as on the banner, Saved runs, the CLI and the map; an
    # exploded run shows its explosion step (docs/science.md), not the count of rows it recorded (one more).
    o = run_outcome(snap) if snap.status in ("exploded", "finished") else None
    shown = o.explosion_step if o is not None and o.explosion_step is not None else snap.step
    return {
        "id": snap.id, "title": title, "color": color,
        "state": snap.status, "label": o.words if o else snap.status,
        "badge": OUTCOME_BADGE[o.label] if o else STATE_BADGE.get(snap.status, "gray"),
        "step": snap.step, "step_text": f"{shown:,}", "steps_text": f"{snap.config.steps:,}",
        # A paused run has no speed: the rate of its last steps would read as if it still trained.
        "detail": ("" if snap.status == "paused" else f"{snap.steps_per_s:,.0f} steps/s · ")
                  + f"{snap.device} · {clip} · lr {live_lr(snap):g}",
        "metrics": [["Loss", fmt(rec.loss if rec else None)],
                    ["‖g‖ before clip", fmt(rec.grad_norm_pre_clip if rec else None)],
                    ["‖g‖ after clip", fmt(rec.grad_norm_post_clip if rec else None)],
                    [accuracy_label(snap.config), "–" if acc is None else f"{acc:.0%}"]],
    }


def status_of(runner) -> dict:
    """The whole status of a runner (every run of the tab), stamped so the page keeps the newest copy."""
    return _status(runner)[0]


def _status(runner) -> tuple[dict, list]:
    t = time.monotonic()  # before the snapshots: a copy is never stamped newer than what it holds
    snaps = [runner.snapshot(i, history=False) for i in range(len(runner.runs))]
    multi = len(snaps) > 1
    return {"t": t, "alive": runner.alive,
            "runs": [run_status(s, s.label if multi else None, run_color(i) if multi else None)
                     for i, s in enumerate(snaps)]}, snaps


def status_line(runner) -> list:
    """Draw the status line of ``runner``; it polls the live route by itself while the runner is alive, and
    when it sees a run change state (explode, finish, stop) it triggers a rerun of the fragment holding it,
    which draws the banners (and reruns the app once the runner has ended). Returns the snapshots it drew
    (without history), for the banners."""
    status, snaps = _status(runner)
    _element(key="status_line", data={"status": status, "url": base_path() + API_PREFIX + runner.id,
                                      "every_ms": int(POLL_S * 1000)}, on_changed_change=_changed)
    return snaps


def _changed() -> None:
    """Nothing to do here: the rerun this trigger causes is the point."""
