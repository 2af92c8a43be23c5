"""The one HTTP route beside the app: ``GET /api/live/<run id>``, the status line's numbers as JSON.

Served by ``serve.py``. It reads a light snapshot of a live run (no history) and answers in well under a
millisecond, which lets the status line stay current without a Streamlit rerun (components/live_status.py).
Run ids are the ones already in the page's address; a run that is not live in this process answers 404.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from training.manager import get_manager

from .live_status import API_PREFIX, status_of

# True once serve.py has mounted the route in this process. The lab page then has no timed status fragment:
# the status line polls the route. Under a bare `streamlit run app.py` it stays False and the fragment ticks.
SERVED = False


async def live_status(request: Request) -> JSONResponse:
    run_id = request.path_params["run_id"]
    manager = get_manager()
    runner = manager.get(run_id)
    if runner is None:
        return JSONResponse({"error": "no live run with this id in this server"}, status_code=404,
                            headers={"Cache-Control": "no-store"})
    manager.touch(run_id)  # a page polling the run is watching it: it does not pause for idleness
    return JSONResponse(status_of(runner), headers={"Cache-Control": "no-store"})


def routes() -> list[Route]:
    global SERVED
    SERVED = True
    return [Route(API_PREFIX + "{run_id}", live_status, methods=["GET"])]
