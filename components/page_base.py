"""Tell the page where the server is, so opening a page's own address (/saved-runs) logs no 404s.

Streamlit's page does not know whether /saved-runs is a page or the server's base path, so it probes both
(/saved-runs/_stcore/health, then /_stcore/health) and the browser logs each miss as a 404. It skips the probing
when the page carries ``window.__streamlit.BACKEND_BASE_URL``: this middleware writes that line into the HTML the
server sends (a few hundred bytes, once per page load), with the server's ``baseUrlPath``.
"""

from __future__ import annotations

import json


def script(base_path: str) -> bytes:
    """The line put at the top of <head>: the server is at this origin, under ``base_path`` ("" or "/lab")."""
    base = json.dumps("/" + base_path.strip("/") + "/" if base_path.strip("/") else "/")
    return (f"<script>window.__streamlit = Object.assign({{}}, window.__streamlit, "
            f"{{BACKEND_BASE_URL: window.location.origin + {base}}});</script>").encode()


class PageBase:
    """ASGI middleware: HTML answers to GET get ``script(base_path)`` after their <head>; the rest pass through."""

    def __init__(self, app, base_path: str = ""):
        self.app, self.line = app, script(base_path or "")

    async def __call__(self, scope, receive, send):
        last = scope.get("path", "").rsplit("/", 1)[-1]
        if scope["type"] != "http" or scope.get("method") != "GET" or "." in last:  # files (.js, .png) pass
            await self.app(scope, receive, send)
            return
        # A page's HTML is ~7 KB: asked uncompressed, so it can be rewritten (a compressed answer passes as is).
        scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]}
        start: dict | None = None
        chunks: list[bytes] = []

        async def rewrite(message):
            nonlocal start
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                if headers.get(b"content-type", b"").startswith(b"text/html") and b"content-encoding" not in headers:
                    start = message  # held until the body is complete
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = b"".join(chunks).replace(b"<head>", b"<head>" + self.line, 1)
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, rewrite)
