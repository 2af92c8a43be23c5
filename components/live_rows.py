"""What the live chart route answers (components/live_api.py): a chart's whole figure, or only what is new since
the page's cursor.

The page holds each chart's figure and a cursor that came with it: the newest step it holds of each run, and its
view (``live_figures.view_of``: the chart, its runs, their live changes). It sends the cursor back with every poll,
so the server keeps nothing per page. The answer is JSON, ``{"cursor": ..., ...}`` with one of:

- nothing more: the chart has nothing new;
- ``traces``, ``shapes``, ``annotations``: a chart whose x axis is the step (``STREAM_KEYS``) gets the points after
  the cursor, trace by trace (``uid`` says which trace they extend; for a trace the page does not hold yet, the
  first ✕ non-finite marker say, the page asks for the whole figure), with the lines and labels of the events
  recorded with those rows;
- ``replace``: a chart that draws one step (``NOW_KEYS``) gets the newest step's traces, and its title, axes,
  lines and labels, when there is one, to draw over the figure it holds (whose template, legend and margins stay);
- ``figure``: the whole figure, for the theory charts, for a page without a cursor, and, with ``reset: true``,
  when the cursor's view is not the chart's now or the rows after it have already folded into decimated buckets.

The new points are built by the chart's own figure function, run on the rows after the cursor
(``Run.tail``), so they are exactly what that function draws: the same blanking of values a log axis cannot show,
the same markers, the same event lines; at most ``chart_parts.MAX_POINTS`` points a line whatever the gap. They
are built as plain dicts (``chart_parts.raw_figures``): no Plotly object is validated four times a second.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from training.run import RunSnapshot

from . import chart_parts as P
from . import live_figures as LF

POINT_KEYS = ("x", "y", "hovertext", "text", "customdata")  # one value per point; a heatmap's z is per column
# Points a line gets per answer: every step up to ~128 steps/s at four polls a second; faster, the min and max
# of each of 16 buckets and the last (chart_parts.thin_indices), so a one-step spike still arrives.
POLL_POINTS = 32
MOVES = ("title", "shapes", "annotations")  # a one-step chart's layout keys that follow the step, with its axes
DIGITS = 6  # significant digits of a value sent: the hover shows 3 or 4, and a line cannot show more


def whole(key: str, snaps: Sequence[RunSnapshot], reset: bool = False) -> str:
    """The whole figure of chart ``key`` and its cursor, as JSON text (the figure as Plotly writes it)."""
    head = {"cursor": LF.cursor(key, snaps), **({"reset": True} if reset else {})}
    return json.dumps(head)[:-1] + ',"figure":' + LF.figure(key, snaps).to_json() + "}"


def since(key: str, tails: Sequence[RunSnapshot | None], after: Sequence[int], view: str) -> str | None:
    """What is new in chart ``key`` after the cursor (``after``, ``view``), from each run's ``Run.tail(after)``;
    None when the page needs the whole figure (its view changed, or a tail is None: its rows have folded)."""
    if key not in LF.STREAM_KEYS + LF.NOW_KEYS or min(after, default=-1) < 0 or any(t is None for t in tails):
        return None
    if len(tails) != len(after) or LF.view_of(key, tails) != view:
        return None
    newest = [max(a, LF.newest_step(key, t)) for a, t in zip(after, tails, strict=True)]
    out: dict = {"cursor": {"after": newest, "view": view}}
    if newest != list(after):
        with P.raw_figures(POLL_POINTS):
            fig = LF.figure(key, tails)
        if key in LF.NOW_KEYS:  # one step's picture: the newest traces, and what of the layout moves with the step
            out["replace"] = {"data": fig.data, "layout": {k: v for k, v in fig.layout.items() if k in MOVES
                                                          or k.startswith(("xaxis", "yaxis"))}}
        else:
            floor = min(after)
            out["traces"] = [t for t in (new_points(trace, floor) for trace in fig.data) if t is not None]
            out["shapes"], out["annotations"] = fig.layout.get("shapes", []), fig.layout.get("annotations", [])
    return json.dumps(out, default=_plain, separators=(",", ":"), ensure_ascii=False)


def new_points(trace: dict, floor: int) -> dict | None:
    """The points of ``trace`` after step ``floor``, with its ``uid`` (and a heatmap's colour range), or None
    when it has none (a reference line [0, end] keeps its end). A legend-only trace (x all None: the spikes'
    entry) comes with its uid alone: the page that lacks it asks for the whole figure."""
    x = np.asarray(trace.get("x", ()))
    if x.dtype.kind not in "iuf":
        return {"uid": trace["uid"]} if x.size and all(v is None for v in x.tolist()) else None
    keep = x > floor
    if not keep.any():
        return None
    heatmap = trace.get("type") == "heatmap"
    out = {"uid": trace["uid"]}
    for k in POINT_KEYS:
        v = trace.get(k)
        if v is not None and not isinstance(v, str) and len(v) == x.size and not (heatmap and k == "y"):
            out[k] = compact(np.asarray(v)[keep])  # a heatmap's y are its layers, one per row of z
    if heatmap:
        out["z"] = [compact(row) for row in np.asarray(trace["z"], dtype=float)[:, keep]]
        out["zmin"], out["zmax"] = trace["zmin"], trace["zmax"]
    return out


def compact(values: np.ndarray) -> list:
    """Numbers for JSON: floats to DIGITS significant digits (shorter text, the same drawing), and null where
    not finite (a gap in a line, as NaN draws one); integers and text as they are."""
    if values.dtype.kind != "f":
        return values.tolist()
    ok = np.isfinite(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 10.0 ** (DIGITS - 1 - np.floor(np.log10(np.abs(np.where(ok & (values != 0), values, 1.0)))))
    rounded = np.round(np.where(ok, values, 0.0) * scale) / scale
    return [v if k else None for v, k in zip(rounded.tolist(), ok.tolist(), strict=True)]


def _plain(value):
    """json.dumps' fallback: numpy arrays and scalars as Python values (non-finite floats as null)."""
    if isinstance(value, np.ndarray):
        return compact(value) if value.dtype.kind == "f" else value.tolist()
    if isinstance(value, np.generic):
        v = value.item()
        return v if not isinstance(v, float) or np.isfinite(v) else None
    raise TypeError(f"not JSON: {type(value).__name__}")
