"""The saved-runs page: every run in the store (also those from before a restart), overlaid, opened, exported,
deleted. It reads the store through the RunManager; a store that cannot be read is a warning, never a traceback.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from training import export
from training import outcome as O
from training.manager import get_manager
from training.registry import describe_clip
from training.store import StoreError, thin

from . import saved_charts as SC
from .data import STATE_BADGE
from .live_figures import short

ss = st.session_state
TABLE_FIELDS = ("model", "activation", "init", "clip", "lr")  # config fields shown in the table
MAX_POINTS = 4000  # per line, before the chart thins it again to what it draws
NOT_DELETABLE = ("running", "paused", "idle")  # still being trained and saved: stop it first


def runs_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per stored run (``Store.list_runs`` dicts): what it is, how it ended, and its key settings."""
    rows = []
    for r in runs:
        cfg = r.get("config") or {}
        rows.append({"run": r["id"], "label": r["label"], "status": r["status"] + (" · live" if r.get("live") else ""),
                     "outcome": r.get("outcome", ""), "steps": r["steps"], "last loss": r["last_loss"],
                     "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created"])),
                     **{k: cfg.get(k) for k in TABLE_FIELDS if k != "clip"},
                     "clip": _clip_words(cfg)})
    return pd.DataFrame(rows, columns=["run", "label", "status", "outcome", "steps", "last loss", "created",
                                       *TABLE_FIELDS])


def _clip_words(cfg: dict) -> str:
    """The stored config's clipping as every view words it; a store written by another version may lack a key."""
    try:
        return describe_clip(cfg.get("clip", "none"), cfg.get("clip_threshold", 1.0), cfg.get("clip_norm_type", "2"))
    except (KeyError, TypeError, ValueError):
        return str(cfg.get("clip"))


def with_outcomes(runs: dict[str, dict], outcomes: dict[str, dict]) -> dict[str, dict]:
    """Each run's ``outcome``: the outcome classifier's words (``Store.outcomes`` events), as the lab's banner,
    the CLI and the map name it; runs that have not ended have none."""
    for rid, e in outcomes.items():
        if rid in runs:
            runs[rid]["outcome"] = O.Outcome.from_event(e).words
    return runs


def export_bytes(store, run_id: str, fmt: str) -> bytes:
    """The run's metrics in the one export schema (``training/export.py``) as CSV or Parquet bytes."""
    return export.table_bytes(store.to_dataframe(run_id), fmt)


def lab_link(info: dict, live_key: str | None) -> str:
    """The lab's URL with the run's config (``Config.to_query``); ``?run=`` too when it still trains here."""
    query = SC.stored_config(info.get("config") or {}).to_query()
    if live_key:
        query["run"] = live_key
    return "./?" + urlencode(query)  # relative: the lab is the app's root page, wherever the app is served


def _live_key(manager, run_id: str) -> str | None:
    """The id ``?run=`` reattaches with (a compare pair is keyed by its first run), or None when not live here."""
    found = manager.find(run_id)
    return found[0].id if found is not None and found[0].alive else None


def _label(info: dict) -> str:
    # "steps" counts the rows stored: an exploded run has one more than its explosion step, so say the outcome.
    how = info.get("outcome") or f"{info['status']} after {info['steps']:,} steps"
    return f"{short(info['id'])} {info['label']} · {how}"


def overlay(store, runs: dict[str, dict], picked: list[str]) -> None:
    """Loss and gradient norm of the picked runs over steps, thinned by the store with spikes kept."""
    if not picked:
        st.info("Pick one or more runs above to overlay their loss and gradient norm.",
                icon=":material/stacked_line_chart:")
        return
    try:
        views = [_view(store, runs[rid], with_label=len(picked) > 1) for rid in picked]
    except (StoreError, KeyError) as e:
        st.warning(f"Cannot draw the overlay: {e}", icon=":material/error:")
        return
    left, right = st.columns(2)
    with left, st.container(key="saved_chart_loss"):
        st.plotly_chart(SC.loss_overlay(views), key="saved_fig_loss")
    with right, st.container(key="saved_chart_grad"):
        st.plotly_chart(SC.grad_norm_overlay(views), key="saved_fig_grad")


def _view(store, info: dict, with_label: bool) -> SC.StoredView:
    """One stored run thinned for the overlay: one read of the run for all three columns and its events (what
    ``Store.series`` does per column), the last value and min/max of each bucket, so spikes survive."""
    r = store.load_run(info["id"])
    missing = [c for c in SC.COLUMNS if c not in r.columns]
    if missing:
        raise KeyError(f"run {info['id']!r} has no column {missing[0]!r}")
    series = {c: thin(r.steps, r.rows[:, r.columns.index(c)], MAX_POINTS) for c in SC.COLUMNS}
    label = _label(info).split(" · ")[0] if with_label else info["label"]
    return SC.stored_view(label, info["config"], series, r.events)


def details(manager, info: dict) -> None:
    """One run: status, config, events, the lab link, downloads and delete."""
    rid, store = info["id"], manager.store
    try:
        stored = manager.open_run(rid)
    except (StoreError, KeyError) as e:
        st.warning(f"Cannot open run {rid}: {e}", icon=":material/error:")
        return
    live_key = _live_key(manager, rid)
    with st.container(key="saved_details"):
        badge = STATE_BADGE.get(info["status"], "gray")
        st.markdown(f"**{info['label']}** · `{rid}` · :{badge}-badge[{info['status']}] · {len(stored.steps):,} "
                    f"steps stored · {info.get('device') or '?'}" + (" · still training here" if live_key else ""))
        if info.get("error"):
            st.error(info["error"], icon=":material/error:")
        buttons = st.columns(4)
        buttons[0].link_button("Open in the lab", lab_link(info, live_key), icon=":material/science:",
                               help="Reattaches to the run while it trains here; otherwise restores its settings.")
        for col, fmt, mime in ((buttons[1], "csv", "text/csv"), (buttons[2], "parquet", "application/octet-stream")):
            col.download_button(f"Download {fmt.upper()}", lambda f=fmt: _export_or_message(store, rid, f),
                                file_name=f"{rid}.{fmt}", mime=mime, key=f"saved_dl_{fmt}", on_click="ignore",
                                icon=":material/download:")
        deletable = info["status"] not in NOT_DELETABLE and not live_key
        buttons[3].button("Delete…", key="btn_saved_delete", disabled=not deletable, on_click=_ask_delete, args=(rid,),
                          help=None if deletable else "Stop the run in the lab first.", icon=":material/delete:")
        if ss.get("saved_confirm") == rid:
            st.warning(f"Delete run {rid} and its {len(stored.steps):,} stored steps? This cannot be undone.")
            yes, no = st.columns([1, 6])
            yes.button("Delete", key="btn_saved_delete_yes", type="primary", on_click=_delete, args=(rid,))
            no.button("Cancel", key="btn_saved_delete_no", on_click=_ask_delete, args=(None,))
        config, events = st.columns([1, 2])
        with config:
            st.markdown("**Config**")
            st.json(stored.config, expanded=True)
        with events:
            st.markdown(f"**Events** ({len(stored.events)})")
            if stored.events:
                st.dataframe(pd.DataFrame([{"step": e.get("step"), "kind": e.get("kind"),
                                            "message": e.get("message", "")} for e in stored.events]),
                             hide_index=True, key="saved_events")
            else:
                st.caption("None: no explosion, spike or live change was recorded.")


def _export_or_message(store, rid: str, fmt: str) -> bytes:
    """Runs when the button is clicked; a store error becomes the file's text rather than a traceback."""
    try:
        return export_bytes(store, rid, fmt)
    except (StoreError, KeyError, OSError, ImportError) as e:
        return f"export failed: {e}\n".encode()


def _ask_delete(rid: str | None) -> None:
    ss.saved_confirm = rid


def _delete(rid: str) -> None:
    ss.saved_confirm = None
    try:
        gone = get_manager().store.delete_run(rid)
        ss.saved_message = ("success", f"Deleted run {rid}." if gone else f"Run {rid} was already gone.")
    except (StoreError, ValueError) as e:
        ss.saved_message = ("warning", f"Cannot delete run {rid}: {e}")
    ss.w_saved_pick = [r for r in ss.get("w_saved_pick", []) if r != rid]
    if ss.get("w_saved_open") == rid:
        ss.w_saved_open = None


def store_check(lines: list[str]) -> None:
    """What the store's check on opening found (``Store.warnings``): lost rows, and where copies of the files as
    found are kept. The lines name paths and run ids, shown as literal text, not Markdown."""
    if lines:
        st.warning("The run store found lost or damaged data when it opened. The runs below are what it could "
                   "still read; details:", icon=":material/database:")
        st.code("\n".join(lines), language=None, wrap_lines=True)


def unreadable(rows: list[tuple[str, str]]) -> None:
    """The stored runs whose row cannot be read (``Store.unreadable_runs``): not listed, but named, with why."""
    if rows:
        st.warning(f"{len(rows)} saved run{'s' if len(rows) > 1 else ''} cannot be read and "
                   f"{'are' if len(rows) > 1 else 'is'} not listed:", icon=":material/database:")
        st.dataframe(pd.DataFrame(rows, columns=["run", "why"]), hide_index=True, key="saved_unreadable")


def render() -> None:
    st.title("Saved runs")
    st.caption("Every run the lab has trained is saved as it trains, and stays here after the server restarts "
               "(a run whose server died shows as *interrupted*). Overlay several, open one, export or delete it.")
    manager = get_manager()
    if manager.store_error:
        st.warning(manager.store_error, icon=":material/database:")
    if manager.store is None:
        return
    if manager.store.error:
        st.warning(manager.store.error, icon=":material/database:")
    store_check(manager.store.warnings())
    kind, text = ss.pop("saved_message", (None, None))
    if kind:
        getattr(st, kind)(text)
    try:
        runs = with_outcomes({r["id"]: r for r in manager.past_runs()}, manager.store.outcomes())
        unreadable(manager.store.unreadable_runs())
    except StoreError as e:
        st.warning(f"Cannot list the saved runs: {e}", icon=":material/database:")
        return
    if not runs:
        st.info("No saved runs yet: start one in the lab.", icon=":material/info:")
        return

    with st.container(key="saved_table"):
        st.dataframe(runs_frame(list(runs.values())), hide_index=True,
                     column_config={"last loss": st.column_config.NumberColumn(format="%.4g")})
    ids = list(runs)
    ss.w_saved_pick = [r for r in ss.get("w_saved_pick", ids[:1]) if r in runs]  # before the widget exists
    picked = st.multiselect("Overlay runs", ids, key="w_saved_pick", format_func=lambda r: _label(runs[r]))
    overlay(manager.store, runs, picked)

    st.subheader("Open a run", divider="gray")
    if ss.get("w_saved_open") not in runs:
        ss.w_saved_open = ids[0]
    rid = st.selectbox("Run", ids, key="w_saved_open", format_func=lambda r: _label(runs[r]))
    if rid is not None:
        details(manager, runs[rid])
