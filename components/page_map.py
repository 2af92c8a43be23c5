"""The stability map page: sweep two config axes, one short run per cell, and watch the map fill in.

The sweep runs as a job of the run manager (``training/mapjob.py``), under the same cap as the runs; the page
keeps only its id (``map_job_id``). The job's thread never touches Streamlit, it appends results under the
job's lock. While it runs, the map keeps itself current like the lab's charts: the live map element polls the
map route for a copy while it is on screen, and asks for one rerun when the sweep ends (no rerun on a timer).
"""

from __future__ import annotations

import urllib.parse

import streamlit as st

from training import lr_sensitivity as LRS
from training import registry as R
from training import sweep as SW
from training.config import Config, ConfigError, from_preset
from training.manager import CapacityError, get_manager
from training.mapjob import MapJob
from training.store import StoreError

from . import map_chart as MC
from . import session as S
from .data import describe
from .live_api import map_url
from .lr_chart import lr_sensitivity_figure
from .panels import plain
from .plot import JS, Source, figure_data, themed

ss = st.session_state
LAB = "the lab's current settings"
DEFAULTS = "defaults"
DEFAULT_X = "lr=1e-3:1:5"
DEFAULT_Y = "init_std=0.01:1:5"  # with the normal init (implied): He init for the default 784-wide input is ~0.05
AXIS_CHARS = 80  # an axis is short text; its errors quote it whole
DEFAULT_STEPS = 100  # 25 cells x 100 steps of the default net: well under a minute on two cores
LIVE_EVERY_S = 1.0  # s between the live map's fetches while on screen; each builds the map's figure once


def current_job() -> MapJob | None:
    """This session's sweep (running or ended), looked up in the manager by the id the page keeps."""
    return get_manager().sweep(ss.get("map_job_id"))


def backends() -> list[str]:
    return SW.backends()


def lab_config() -> Config | None:
    """The live lab's config in this session: its current run's, else its controls'; None if the lab is unused.

    Kept in ``map_lab_config``: the lab's widget values leave session state once its page is not drawn.
    """
    runner = S.current_runner()
    if runner is not None:
        ss.map_lab_config = runner.runs[0].cfg
    elif "initialized" in ss and "w_model" in ss:
        try:
            ss.map_lab_config = S.read_config()
        except ConfigError:
            pass
    return ss.get("map_lab_config")


def base_choices() -> list[str]:
    return ([LAB] if lab_config() is not None else []) + [DEFAULTS, *R.PRESETS]


def base_config(choice: str) -> Config:
    if choice == LAB:
        return lab_config() or Config()
    return Config() if choice == DEFAULTS else from_preset(choice)


def launch() -> None:
    """Launch button: build the sweep (every cell validated first), then start its thread."""
    ss.map_error = None
    job = current_job()
    if job is not None and job.alive:
        job.stop()  # its slots are free again for the new sweep
    try:
        base = base_config(ss.m_base)
        x, y = SW.parse_axis(ss.m_x), SW.parse_axis(ss.m_y)
        base = base.replace(**SW.implied(base, (x.name, y.name)))  # an init_std axis needs the normal init
        sweep = SW.Sweep(base, x, y, seeds=int(ss.m_seeds), steps=int(ss.m_steps))
    except (SW.AxisError, ConfigError) as e:
        ss.map_error = str(e)
        return
    try:
        ss.map_job_id = get_manager().start_sweep(sweep, ss.m_backend).id
    except CapacityError as e:
        ss.map_error = str(e)
        return
    ss.map_loaded = None


def cancel() -> None:
    job = current_job()
    if job is not None:
        job.cancel()


def load() -> None:
    """Stored-sweep picker: redraw a saved map (the running sweep, if any, keeps going)."""
    sid = ss.m_stored
    if not sid:
        return
    try:
        df, meta = SW.load_stored(sid)
        ss.map_loaded = (df, meta, SW.Sweep.from_metadata(meta))
        ss.map_error = None
    except Exception as e:  # a row from another version, or the store went away
        ss.map_error = f"could not load sweep {sid}: {type(e).__name__}: {e}"


def controls() -> None:
    choices = base_choices()
    st.selectbox("Base configuration", choices, key="m_base",
                 help="Every cell is this configuration with the two axis values changed.")
    if ss.m_base in choices:
        st.caption(describe(base_config(ss.m_base)))
    left, right = st.columns(2)
    left.text_input("x axis", DEFAULT_X, key="m_x", max_chars=AXIS_CHARS,
                    help="name=lo:hi:n (log-spaced over more than a decade), name=log:lo:hi:n, name=lin:lo:hi:n or "
                         "name=v1,v2,...")
    right.text_input("y axis", DEFAULT_Y, key="m_y", max_chars=AXIS_CHARS,
                     help="Any numeric, true/false (qk_norm=false,true) or choice (norm_position=pre,post) field, "
                          f"or depth: {', '.join(SW.AXES)}")
    a, b, c = st.columns(3)
    a.number_input("seeds per cell", 1, 100, 1, key="m_seeds", help="The map shows the majority outcome.")
    b.number_input("steps per run", 5, 10_000, DEFAULT_STEPS, key="m_steps")
    c.radio("backend", backends(), key="m_backend", horizontal=True,
            help="local: a process per free training slot (up to one per core); serial: one after another in "
                 "this server; ray: Ray tasks.")
    job = current_job()
    running = job is not None and job.alive
    a, b, _ = st.columns([1, 1, 4])
    a.button("Launch", key="btn_map_launch", type="primary", on_click=launch, icon=":material/play_arrow:")
    b.button("Cancel", key="btn_map_cancel", on_click=cancel, disabled=not running, icon=":material/stop:")
    try:
        stored = SW.list_stored() if SW.store_path().exists() else []
    except StoreError as e:  # a foreign or damaged store file: the map still runs, unsaved
        st.warning(plain(f"Cannot list the saved maps: {e}"), icon=":material/database:")
        stored = []
    if stored:
        st.selectbox("Or load a saved map", [None, *[s["id"] for s in stored]], key="m_stored", on_change=load,
                     format_func=lambda sid: "—" if sid is None else next(
                         f"{s['label']} · {s['cells']} cells{'' if s['complete'] else ' (incomplete)'}"
                         for s in stored if s["id"] == sid))


# Brings the picked cell's details into view after a click on the map (a click redraws the page where it was).
_SCROLL_JS = """
export default function ({ data, parentElement }) {
  const seen = parentElement.__token;  // undefined on the first draw: the page opens where it opens
  if (seen !== undefined && seen !== data.token) parentElement.scrollIntoView({block: 'center', behavior: 'smooth'});
  parentElement.__token = data.token;
}
"""
_scroll_here = st.components.v2.component("gel_scroll_here", html="", js=_SCROLL_JS, isolate_styles=False)
_live_map = st.components.v2.component("gel_map", html="", js=JS, isolate_styles=False)


def lab_link(cfg: Config) -> str:
    """A URL that opens the lab with ``cfg`` (the lab reads its controls from the URL on a session's first load)."""
    query = urllib.parse.urlencode(cfg.to_query())
    return "/?" + query if query else "/"


def current_sweep() -> SW.Sweep | None:
    loaded, job = ss.get("map_loaded"), current_job()
    return loaded[2] if loaded is not None else (job.sweep if job is not None else None)


def on_pick() -> None:
    """A click on the map: point the cell pickers at the clicked cell (callbacks run before widgets are drawn)."""
    sweep = current_sweep()
    points = ss.chart_map.get("selection", {}).get("points", []) if ss.get("chart_map") else []
    if sweep is None or not points:
        return
    near = lambda values, v: min(values, key=lambda a: abs(float(a) - float(v)))  # noqa: E731 (float round trip)
    ss.m_cell_x, ss.m_cell_y = near(sweep.x.values, points[0]["x"]), near(sweep.y.values, points[0]["y"])
    ss.map_picks = ss.get("map_picks", 0) + 1  # the details scroll into view


def live_map(job: MapJob, pick: tuple) -> None:
    """A running sweep's map: the live map element (components/live.js) fetches its figure and progress from the
    map route (components/live_api.py) while it is on screen, and asks for one rerun when the sweep ends. That
    rerun draws the final map with ``st.plotly_chart``: the in-place chart sends no click selection, so the live
    map opens no cell on a click (the pickers under it do)."""
    state = MC.live_state(job, pick)
    data = figure_data(state.pop("figure"), MC.HEIGHT, {"displaylogo": False},
                       Source(map_url(job.id, pick), LIVE_EVERY_S))
    _live_map(key="map_live", data={**data, **state, "sweep": job.id}, on_ended_change=_ended)


def _ended() -> None:
    """Nothing to do here: the rerun this trigger causes is the point."""


def draw(results, sweep: SW.Sweep, status: str, job: MapJob | None = None) -> None:
    """The map of ``results``, or the live map of the running ``job``; the χ = 1 line, the picked cell and the
    rule."""
    for key, axis in (("m_cell_x", sweep.x), ("m_cell_y", sweep.y)):
        if key in ss and ss[key] not in axis.values:  # left from another sweep's axes
            del ss[key]
    pick = (ss.get("m_cell_x", sweep.x.values[0]), ss.get("m_cell_y", sweep.y.values[0]))
    if job is not None:
        live_map(job, pick)
    else:
        st.plotly_chart(themed(MC.sweep_figure(results, sweep, status, pick)), key="chart_map", theme=None,
                        on_select=on_pick, selection_mode="points", config={"displaylogo": False})
    line = SW.critical_line(sweep.x, sweep.y, sweep.base, sweep.width)
    if line is not None:
        st.caption(f"Dashed: mean-field theory's χ = 1 line (edge of chaos) at init_std = {line.value:.3g} for "
                   f"fan-in {line.fan_in}; {'to its right' if line.axis == 'x' else 'above it'} χ > 1 and gradients "
                   "grow layer after layer.")
    st.markdown("**Open a cell in the lab** (click a cell, or pick it here)")
    _scroll_here(key="map_cell_details", data={"token": ss.get("map_picks", 0)})
    a, b, c = st.columns([2, 2, 3])
    x = a.selectbox(sweep.x.name, sweep.x.values, key="m_cell_x", format_func=sweep.x.label)
    y = b.selectbox(sweep.y.name, sweep.y.values, key="m_cell_y", format_func=sweep.y.label)
    cfg = sweep.config(x, y)
    c.link_button("Open in the lab", lab_link(cfg), icon=":material/open_in_new:")
    c.caption(describe(cfg))
    st.caption(f"**How a cell is classified** (first match wins): {sweep.rule.text()}. "
               "Colours: learned green, stuck grey, vanished blue, exploded red; blank: not run yet.")
    if job is None:
        lr_curves(results, sweep)


def lr_curves(results, sweep: SW.Sweep) -> None:
    """Under a finished map with an lr axis: final loss against lr per value of the other axis, with each line's
    LR sensitivity (training/lr_sensitivity.py)."""
    axis = LRS.lr_axis({"x": {"name": sweep.x.name}, "y": {"name": sweep.y.name}})
    rows = results.to_dict("records") if hasattr(results, "to_dict") else list(results)
    if axis is None or not rows:
        return
    other = sweep.y if axis == "x" else sweep.x
    st.plotly_chart(themed(lr_sensitivity_figure(LRS.curves(rows, axis), other)), key="chart_lr_sensitivity",
                    theme=None, config={"displaylogo": False})
    st.caption("LR sensitivity (Wortsman et al. 2023): the mean over the lr grid of min(final loss, loss at init) "
               "minus the best final loss; lower means more learning rates train well.")


def map_view() -> None:
    """The map: the running (or last) sweep's results, or a loaded one."""
    loaded = ss.get("map_loaded")
    job = current_job()
    if loaded is not None:
        df, meta, sweep = loaded
        draw(df, sweep, f"saved, {len(df)} cells" + ("" if meta.get("complete") else " (incomplete)"))
        return
    if job is None:
        st.info("Pick two axes and press **Launch**: each cell trains a short run and is coloured by how it "
                "ended. Try the defaults: learning rate against the init's scale.", icon=":material/grid_on:")
        return
    alive = job.alive  # before the copy: an ended job's copy holds every result
    results = job.snapshot()
    status = MC.progress_text(job, len(results), alive)
    if not alive:
        st.caption(plain(f"Sweep ended: {status}; {job.saved}."))
    if job.error:
        st.error(plain(f"The sweep stopped: {job.error}"), icon=":material/error:")
    draw(results, job.sweep, status, job if alive else None)


def render() -> None:
    st.title("Stability map")
    st.caption("Which settings explode? Sweep two settings over a grid, train a short run per cell, and colour "
               "each cell by how it ended.")
    controls()
    if ss.get("map_error"):
        st.error(plain(ss.map_error), icon=":material/error:")
    map_view()
