"""Plotly charts that update in place.

``st.plotly_chart`` gives a chart a new element identity whenever its figure changes, so every live refresh
tears the chart down and draws it again from nothing: about 0.1 s of browser time per chart, on a core the
training thread shares on a small machine (docs/benchmarks.md, P2 and P3). This element keeps one chart per key
mounted for the life of the page and hands each new figure to ``Plotly.react``, which redraws only what
changed and keeps the user's zoom, pan and hidden traces (the figures set ``layout.uirevision``).

plotly.js is the copy that ships inside the ``plotly`` Python package, so the figures and the library that
draws them always come from the same release. It is served from the app's static folder (Streamlit's
``server.enableStaticServing``), copied there on first use; the browser loads it once per page.

When that is not possible (static serving switched off, a read-only app folder) charts fall back to
``st.plotly_chart``: they still show the same figures, redrawn from scratch at each refresh.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import plotly
import plotly.graph_objects as go
import streamlit as st
from plotly.offline import get_plotlyjs_version

from .theme import DARK_SWAPS, dark

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"  # Streamlit serves <app dir>/static at /app/static
PLOTLY_JS_SOURCE = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
# The version in the name: a browser holding an older copy in its cache fetches the new one after an upgrade.
PLOTLY_JS_NAME = f"plotly-{get_plotlyjs_version()}.min.js"
DEFAULT_HEIGHT = 450  # plotly.js's own default, used when a figure sets no height

# Runs in the page (no iframe, no shadow root: plotly.js puts its hover and mode-bar styles in the document
# head). Streamlit calls the default export at every rerun that sends this element, with the same parentElement
# while the element stays mounted, and calls the returned function once, when it is removed.
JS = r"""
// One queue for every chart of the page: a figure waits until its chart is on screen, then charts are drawn one
// per task, at background priority. A burst of figures (the per-layer charts arrive together) never holds the
// page for longer than one chart's draw, so the status line's updates get through in between.
const state = window.__gelPlot || (window.__gelPlot = {loading: null, queue: new Map(), busy: false, seen: null});

function loadPlotly(src) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!state.loading) {
    state.loading = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = src;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { state.loading = null; reject(new Error('could not load ' + src)); };
      document.head.appendChild(script);
    });
  }
  return state.loading;
}

// Dark mode: Streamlit gives the element its theme as CSS variables; a light text colour means a dark page.
function isDark(div) {
  const style = getComputedStyle(div);
  const text = style.getPropertyValue('--st-text-color').trim() || style.color;
  const probe = document.createElement('span');
  probe.style.color = text;
  document.body.appendChild(probe);
  const rgb = (getComputedStyle(probe).color.match(/[\d.]+/g) || [0, 0, 0]).map(Number);
  probe.remove();
  return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2] > 128;
}

// The figure's light ink and paper swapped for dark ones (components/theme.py DARK_SWAPS), values only.
function recolor(value, swaps) {
  if (Array.isArray(value)) return value.map((v) => recolor(v, swaps));
  if (value && typeof value === 'object') {
    const out = {};
    for (const k of Object.keys(value)) out[k] = recolor(value[k], swaps);
    return out;
  }
  return typeof value === 'string' && swaps[value.toLowerCase()] !== undefined ? swaps[value.toLowerCase()] : value;
}

const later = (fn) => (window.scheduler && scheduler.postTask)
  ? scheduler.postTask(fn, {priority: 'background'}) : setTimeout(fn, 0);

function pump() {
  if (state.busy) return;
  const next = [...state.queue.keys()].find((div) => div.isConnected && div.__visible);
  for (const div of [...state.queue.keys()]) if (!div.isConnected) state.queue.delete(div);
  if (!next) return;
  const data = state.queue.get(next);
  state.queue.delete(next);
  state.busy = true;
  later(() => loadPlotly(data.src).then((Plotly) => {
    let fig = JSON.parse(data.figure);
    const dark = isDark(next);
    if (dark) fig = recolor(fig, data.dark);
    next.dataset.theme = dark ? 'dark' : 'light';
    return Plotly.react(next, fig.data, fig.layout, data.config);
  }).then(() => { next.dataset.drawn = String((next.__draws = (next.__draws || 0) + 1)); }, (err) => {
    next.textContent = 'The chart could not be drawn: ' + err.message;
  }).finally(() => { state.busy = false; later(pump); }));
}

// Off-screen charts are not drawn: their latest figure waits and is drawn when they scroll into view.
function watch(div) {
  if (!state.seen) {
    state.seen = new IntersectionObserver((entries) => {
      for (const e of entries) e.target.__visible = e.isIntersecting;
      pump();
    }, {rootMargin: '200px'});
  }
  state.seen.observe(div);
}

// A chart with a source fetches its newest figure on its period, but only while it is on screen: a chart
// nobody looks at costs neither the server nor the page anything. One loop per chart (a timer or a fetch in
// flight), whatever the number of reruns that hand it new data.
function refresh(div) {
  div.__timer = null;
  const source = div.__source;
  if (!source || !div.isConnected) return;
  if (!div.__visible) { schedule(div); return; }
  div.__inflight = true;
  fetch(source, {cache: 'no-store'}).then((r) => {
    if (r.status === 404) { if (div.__source === source) div.__source = null; return null; }  // run gone
    return r.ok ? r.text() : null;
  }).catch(() => null).then((figure) => {
    div.__inflight = false;
    if (figure && div.__source === source) {
      state.queue.set(div, {...div.__base, figure});
      pump();
    }
    schedule(div);
  });
}

function schedule(div) {
  if (div.__source && !div.__timer && !div.__inflight && div.isConnected) {
    div.__timer = setTimeout(() => refresh(div), div.__every);
  }
}

export default function ({ data, parentElement }) {
  if (data.preload) {  // opened with the page, so the first chart of a run does not wait for plotly.js
    loadPlotly(data.src).catch(() => {});
    return;
  }
  let div = parentElement.querySelector(':scope > .gel-plot');
  if (!div) {
    div = document.createElement('div');
    div.className = 'gel-plot';
    div.style.width = '100%';
    parentElement.appendChild(div);
    watch(div);
  }
  div.style.height = data.height + 'px';  // hold the space before the first draw: the page does not jump
  state.queue.set(div, data);  // only the latest figure of a chart is kept
  pump();
  div.__base = data;
  div.__every = data.every_ms;
  if (div.__source !== data.source) { clearTimeout(div.__timer); div.__timer = null; div.__source = data.source; }
  schedule(div);
  return () => {
    div.__source = null;
    clearTimeout(div.__timer);
    state.queue.delete(div);
    if (state.seen) state.seen.unobserve(div);
    if (window.Plotly) window.Plotly.purge(div);
  };
}
"""

_element = st.components.v2.component("gel_plot", html="", js=JS, isolate_styles=False)


def ensure_plotly_js(static_dir: Path = STATIC_DIR) -> bool:
    """Put plotly.js in the app's static folder (once; a complete copy is left alone). False if it cannot."""
    target = static_dir / PLOTLY_JS_NAME
    try:
        if target.is_file() and target.stat().st_size == PLOTLY_JS_SOURCE.stat().st_size:
            return True
        static_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.copyfile(PLOTLY_JS_SOURCE, partial)
        os.replace(partial, target)  # atomic: two sessions copying at once never serve half a file
        return True
    except OSError:
        return False


def preload() -> None:
    """Start loading plotly.js when the page opens (an element that draws nothing)."""
    if in_place_available():
        _element(key="gel_plot_preload", data={"preload": True, "src": plotly_js_url()})


def base_path() -> str:
    """The server's ``baseUrlPath`` as a path prefix ("" or "/lab"): every URL the page fetches starts with it."""
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


def plotly_js_url() -> str:
    return f"{base_path()}/app/static/{PLOTLY_JS_NAME}"


def in_place_available() -> bool:
    return bool(st.get_option("server.enableStaticServing")) and ensure_plotly_js()


def plotly_figure(fig, key: str, config: dict | None = None, source: Source | None = None) -> None:
    """Draw ``fig`` under ``key``, updating the chart already on the page when there is one; with ``source``,
    the chart then fetches its newest figure from there, on its period, while it is on screen."""
    config = {"displaylogo": False, "displayModeBar": "hover", "responsive": True, **(config or {})}
    if not in_place_available():
        # theme=None: our own colours and log axes, as in the in-place chart.
        st.plotly_chart(themed(fig), key=key, theme=None, config=config)
        return
    figure = fig.to_json()
    height = (fig.layout.height or DEFAULT_HEIGHT)
    _element(key=key, data={"figure": figure, "config": config, "height": height, "src": plotly_js_url(),
                            "dark": DARK_SWAPS,
                            "source": source.url if source else None,
                            "every_ms": int(source.every_s * 1000) if source else None})


def themed(fig):
    """``fig`` in the viewer's theme, for charts drawn by ``st.plotly_chart`` (the in-place chart swaps colours
    in the page, see DARK_SWAPS)."""
    if (st.context.theme.type or "light") != "dark":
        return fig
    return go.Figure(dark(fig.to_plotly_json()))


@dataclass(frozen=True)
class Source:
    """Where a live chart fetches its newest figure (the live chart route), and how often."""

    url: str
    every_s: float


def chart(fig, key: str, caption: str, source: Source | None = None) -> None:
    """One live chart and its caption. It updates in place, so it stays interactive while the run trains:
    hover, zoom and hidden legend entries survive the refresh. With a ``source`` the chart refreshes itself
    from it while it is on screen."""
    plotly_figure(fig, key, source=source)
    st.caption(caption)
