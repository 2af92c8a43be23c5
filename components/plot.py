"""Plotly charts that update in place.

``st.plotly_chart`` gives a chart a new element identity whenever its figure changes, so every live refresh
tears the chart down and draws it again from nothing: about 0.1 s of browser time per chart, on a core the
training thread shares on a small machine (docs/benchmarks.md, P2 and P3). This element keeps one chart per key
mounted for the life of the page and hands each new figure to ``Plotly.react``, which redraws only what
changed and keeps the user's zoom, pan and hidden traces (the figures set ``layout.uirevision``).

plotly.js is the copy that ships inside the ``plotly`` Python package, so the figures and the library that
draws them always come from the same release. It is served from the app's static folder (Streamlit's
``server.enableStaticServing``), copied there on first use; the browser loads it once per page.

Its JavaScript is in ``components/live.js``, beside the status line's, with the one fetch loop both share.
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

# The live page's elements and their one fetch loop (the status line uses it too), after what a chart holds between
# answers (live_stream.js): read once, at import.
JS = "\n".join(Path(__file__).with_name(name).read_text(encoding="utf-8") for name in ("live_stream.js", "live.js"))

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
    """Start loading plotly.js when the page opens (an element that draws nothing); say so on the page if the
    charts cannot have it."""
    if not st.get_option("server.enableStaticServing"):
        st.warning("The charts need `server.enableStaticServing` (set in .streamlit/config.toml): without it they "
                   "cannot load plotly.js.", icon=":material/warning:")
    elif not ensure_plotly_js():
        st.warning(f"The charts cannot load plotly.js: it could not be copied to {STATIC_DIR}.",
                   icon=":material/warning:")
    _element(key="gel_plot_preload", data={"preload": True, "src": plotly_js_url()})


def base_path() -> str:
    """The server's ``baseUrlPath`` as a path prefix ("" or "/lab"): every URL the page fetches starts with it."""
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


def plotly_js_url() -> str:
    return f"{base_path()}/app/static/{PLOTLY_JS_NAME}"


def figure_data(figure: str, height: int, config: dict | None = None, source: Source | None = None) -> dict:
    """What the in-place chart is handed: a figure as Plotly JSON text, the height it holds before its first draw,
    how to draw it, and where it fetches its newest figure while on screen (``source``)."""
    config = {"displaylogo": False, "displayModeBar": "hover", "responsive": True, **(config or {})}
    return {"figure": figure, "config": config, "height": height, "src": plotly_js_url(), "dark": DARK_SWAPS,
            "source": source.url if source else None, "cursor": source.cursor if source else None,
            "batch": source.batch if source else None,
            "every_ms": int(source.every_s * 1000) if source else None}


def plotly_figure(fig, key: str, config: dict | None = None, source: Source | None = None) -> None:
    """Draw ``fig`` under ``key``, updating the chart already on the page when there is one; with ``source``,
    the chart then fetches its newest figure from there, on its period, while it is on screen."""
    _element(key=key, data=figure_data(fig.to_json(), fig.layout.height or DEFAULT_HEIGHT, config, source))


def themed(fig):
    """``fig`` in the viewer's theme, for the charts other pages draw with ``st.plotly_chart`` (the in-place chart
    swaps colours in the page, see DARK_SWAPS)."""
    if (st.context.theme.type or "light") != "dark":
        return fig
    return go.Figure(dark(fig.to_plotly_json()))


@dataclass(frozen=True)
class Source:
    """Where a live chart fetches what is new (the live chart route), how often, and the cursor of the figure it is
    handed with (live_figures.cursor: the newest step it holds of each run, and its view). With ``batch`` (the
    route that answers several charts at once), the page asks for it together with its other such charts, in one
    request a period."""

    url: str
    every_s: float
    cursor: dict | None = None
    batch: str | None = None


def chart(fig, key: str, caption: str, source: Source | None = None) -> None:
    """One live chart and its caption. It updates in place, so it stays interactive while the run trains:
    hover, zoom and hidden legend entries survive the refresh. With a ``source`` the chart refreshes itself
    from it while it is on screen."""
    plotly_figure(fig, key, source=source)
    st.caption(caption)
