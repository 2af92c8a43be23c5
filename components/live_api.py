"""The HTTP routes beside the app, mounted by ``serve.py``; the live view's status line and charts poll them to
stay current without a Streamlit rerun (components/live.js).

- ``GET /api/live/<run id>``: the status line's numbers as JSON, from a light snapshot of a live runner (no
  history); well under a millisecond (components/live_status.py).
- ``GET /api/chart/<chart key>?runs=<ids>&extra=<ids>[&after=<steps>&view=<view>]``: one live chart, built by the
  same function a rerun would use (components/live_figures.py): JSON with the chart's ``cursor`` and either its
  whole ``figure`` (Plotly JSON) or, given the page's cursor, only what is new after it (components/live_rows.py
  says which). ``runs`` are the runs it draws, ``extra`` earlier runs overlaid on the loss and gradient-norm
  charts; ``after`` the newest step the page holds of each of them, in that order. A chart fetches it only
  while it is on screen, so charts nobody looks at cost the server nothing.
- ``GET /api/charts?c=<chart key>?<query>&c=...``: the same answers for every on-screen streaming chart of a
  page at once, as a JSON list: the page polls this once a period rather than once per chart.
- ``GET /api/map/<job id>?x=<value>&y=<value>``: a running sweep's map and progress, as the stability map page
  draws them (components/map_chart.py ``live_state``): ``figure`` (Plotly JSON text), ``done``, ``total``,
  ``text`` and ``alive``; ``x`` and ``y`` name the picked cell it outlines. The page's live map polls it while on
  screen and asks for one rerun when it answers ``alive: false``.

Run ids are the ones already in the page's address. A run or a sweep that is not in this process answers 404. A request
names at most the runs a page ever draws (``MAX_RUNS`` and ``MAX_EXTRA``, after removing repeats; more is a 400),
so its cost and its answer are bounded whatever the query string holds.

The routes are plain functions: Starlette runs them on its worker threads, so a lock held elsewhere (a run's
lock while a snapshot copies its history) never holds up the event loop that serves every page.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from training.config import shown
from training.manager import get_manager

from . import live_figures as LF
from . import live_rows as LR
from . import map_chart as MC
from .live_status import API_PREFIX, status_of
from .plot import base_path

CHART_PREFIX = "/api/chart/"
CHARTS_PATH = "/api/charts"
MAP_PREFIX = "/api/map/"
NO_STORE = {"Cache-Control": "no-store"}
MAX_RUNS = 2  # the runs of a tab: A and B of a comparison
MAX_EXTRA = 8  # earlier runs overlaid on the loss and gradient-norm charts (the page's picker allows as many)
MAX_CHARTS = 8  # charts in one poll: the six that stream, with room to spare


def live_status(request: Request) -> JSONResponse:
    run_id = request.path_params["run_id"]
    manager = get_manager()
    runner = manager.get(run_id)
    if runner is None:
        return _error("no live run with this id in this server", 404)
    manager.touch(run_id)  # a page polling the run is watching it: it does not pause for idleness
    return JSONResponse(status_of(runner), headers=NO_STORE)


def chart_url(key: str, runs: list[str], extra: list[str] = ()) -> str:
    query = {"runs": ",".join(runs)}
    if extra:
        query["extra"] = ",".join(extra)
    return f"{base_path()}{CHART_PREFIX}{key}?{urlencode(query)}"


def _snapshot(run_id: str):
    """The full snapshot of run ``run_id`` (any run of any runner in this process), or None."""
    found = get_manager().find(run_id)
    return found[0].snapshot(found[1]) if found is not None else None


def _ids(value: str | None) -> list[str]:
    """The distinct ids of a comma-separated list, in order."""
    return list(dict.fromkeys(x for x in (value or "").split(",") if x))


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=NO_STORE)


def live_chart(request: Request) -> Response:
    """A plain function: Starlette runs it on a worker thread, so building the figure never holds up the
    event loop that serves the page. With the page's cursor (``after``, ``view``) it answers only what is new
    (components/live_rows.py); without one, or when the cursor no longer fits, the whole figure."""
    status, body = chart_answer(request.path_params["key"], request.query_params)
    return Response(body, status_code=status, media_type="application/json", headers=NO_STORE)


def live_charts(request: Request) -> Response:
    """Every on-screen chart of a page in one poll (``c``: each chart's ``<key>?<query>``, as ``live_chart``
    takes them): one request and one answer a period, a JSON list in the order asked, where a chart that
    failed answers ``{"error", "status"}``. A plain function, like ``live_chart``."""
    specs = request.query_params.getlist("c")
    if len(specs) > MAX_CHARTS:
        return _error(f"c: at most {MAX_CHARTS} charts", 400)
    out = []
    for spec in specs:
        key, _, query = spec.partition("?")
        status, body = chart_answer(key, QueryParams(query))
        out.append(body if status == 200 else body[:-1] + f',"status":{status}}}')
    return Response("[" + ",".join(out) + "]", media_type="application/json", headers=NO_STORE)


def chart_answer(key: str, params) -> tuple[int, str]:
    """The HTTP status and JSON text of chart ``key`` for the query ``params`` (``runs``, ``extra``, ``after``,
    ``view``)."""
    if key not in LF.KEYS:
        return _fail(f"no live chart {shown(key)}; known: {', '.join(LF.KEYS)}", 404)
    run_ids = _ids(params.get("runs"))
    extra_ids = [i for i in _ids(params.get("extra")) if i not in run_ids]
    if len(run_ids) > MAX_RUNS or len(extra_ids) > MAX_EXTRA:
        return _fail(f"runs: at most {MAX_RUNS} distinct run ids, extra: at most {MAX_EXTRA}", 400)
    if key not in LF.OVERLAY_KEYS:  # the other charts draw the first run only: copy nothing else
        run_ids, extra_ids = run_ids[:1], []
    after, view = _steps(params.get("after")), params.get("view")
    if after is not None and view and len(after) == len(run_ids) + len(extra_ids):
        tails = [_tail(i, a) for i, a in zip(run_ids, after, strict=False)]
        tails += [_tail(i, a, overlay=True) for i, a in zip(extra_ids, after[len(run_ids):], strict=True)]
        body = LR.since(key, tails, after, view)
        if body is not None:
            return 200, body
    runs = [_snapshot(i) for i in run_ids]
    if not runs or any(s is None for s in runs):
        return _fail("runs: no such run in this server", 404)
    extra = [LF.as_overlay(s) for s in map(_snapshot, extra_ids) if s is not None]
    return 200, LR.whole(key, runs + extra, reset="after" in params)


def _fail(message: str, status: int) -> tuple[int, str]:
    return status, json.dumps({"error": message})


def _steps(value: str | None) -> list[int] | None:
    """The cursor's steps, one per run (``after=120,120``); None when absent or not integers."""
    try:
        return [int(x) for x in value.split(",")] if value else None
    except ValueError:
        return None


def _tail(run_id: str, after: int, overlay: bool = False):
    """Run ``run_id``'s rows after step ``after`` (``Run.tail``), or None (no such run, or they have folded)."""
    found = get_manager().find(run_id)
    tail = found[0].runs[found[1]].tail(after) if found is not None else None
    return LF.as_overlay(tail) if overlay and tail is not None else tail


def charts_url() -> str:
    """Where a page polls all its on-screen streaming charts at once (``live_charts``)."""
    return f"{base_path()}{CHARTS_PATH}"


def map_url(job_id: str, pick: tuple) -> str:
    """Where the live map of sweep ``job_id`` fetches its state, outlining the ``pick`` (x, y) cell."""
    return f"{base_path()}{MAP_PREFIX}{job_id}?{urlencode({'x': pick[0], 'y': pick[1]})}"


def live_map(request: Request) -> JSONResponse:
    """A plain function, like the others: the figure is built on a worker thread."""
    job = get_manager().sweep(request.path_params["job_id"])
    if job is None:
        return _error("no sweep with this id in this server", 404)
    pick = (request.query_params.get("x"), request.query_params.get("y"))  # checked against the axes: MC.picked
    return JSONResponse(MC.live_state(job, pick), headers=NO_STORE)


def warm_up() -> None:
    """Pay at server start, on a background thread, what the first Start would pay (measured: 3.5 s of its
    script run, against 0.13 s for the next): sklearn's import and the digits set (1.1 s), torch's optimizer
    machinery, which imports torch._dynamo on the first optimizer built (1.9 s), and plotly's figure validators.
    A one-layer net takes one probing, evaluating step and every live chart is drawn once; nothing is kept."""
    from training.config import Config
    from training.runner import Run

    for cfg in (Config(hidden_sizes=(8,), steps=1), Config(model="lstm", dataset="adding", hidden_size=4,
                                                             seq_len=4, steps=1, optimizer="adam")):
        run = Run(cfg, device="cpu")
        run.record(run.trainer.step())
        snap = run.snapshot()
        for key in LF.KEYS:
            LF.figure(key, [snap]).to_json()
        run.release()


def routes() -> list[Route]:
    """The routes, under the server's ``baseUrlPath`` like Streamlit's own (read when serve.py is loaded,
    after `streamlit run` has read the config)."""
    base = base_path()
    return [Route(base + API_PREFIX + "{run_id}", live_status, methods=["GET"]),
            Route(base + CHART_PREFIX + "{key}", live_chart, methods=["GET"]),
            Route(base + CHARTS_PATH, live_charts, methods=["GET"]),
            Route(base + MAP_PREFIX + "{job_id}", live_map, methods=["GET"])]
