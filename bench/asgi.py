"""GET from the app's live routes as the ASGI server would call them, without a server: for the tests and the
server-limits bench, which measure the routes themselves (their answers, their memory), not the network."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from starlette.routing import Router

from components import live_api


def scope(path: str) -> dict:
    """The ASGI scope of a plain GET of ``path`` (with its query string) from 127.0.0.1."""
    path, _, query = path.partition("?")
    return {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "headers": [],
            "query_string": query.encode(), "root_path": "", "scheme": "http", "server": ("127.0.0.1", 80)}


async def receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


def get(path: str) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) of GET ``path`` from the live routes. The route runs in an event loop on a thread
    of its own: a caller may already run one on this thread (the browser tests' Playwright does)."""
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, Router(routes=live_api.routes())(scope(path), receive, send)).result()
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), headers
