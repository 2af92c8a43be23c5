"""The server answers only requests addressed to it by a name it knows: a guard against DNS rebinding.

Binding 127.0.0.1 keeps other machines out, not other web pages: a page on ``evil.example`` whose name the
attacker re-points at 127.0.0.1 can fetch this server, and open its WebSocket, as its own origin. Such a request
carries the attacker's name in ``Host`` (and ``Origin``), never this server's. So every request, HTTP or
WebSocket, Streamlit's own endpoints and the app's routes alike, must name this server in ``Host`` and, when it
sends one, in ``Origin``: a localhost name, an IP address (a rebinding needs a DNS name: a page loaded from an
address is that address's own origin), the address the server is bound to, or a name in ``GEL_ALLOWED_HOSTS``
(comma-separated; ``*`` allows any name). Anything else gets 403 before Streamlit sees it.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

ENV = "GEL_ALLOWED_HOSTS"
LOCAL_NAMES = ("localhost",)
REFUSED = (b"This server answers only to localhost, IP addresses and the names in " + ENV.encode()
           + b"; set " + ENV.encode() + b"=name to serve it under another name.\n")


def allowed_names(bound: str | None = None, env: str | None = None) -> frozenset[str]:
    """The host names allowed besides localhost names and IP addresses: the bound address and ``GEL_ALLOWED_HOSTS``."""
    raw = os.environ.get(ENV, "") if env is None else env
    names = {n.strip().lower().rstrip(".") for n in raw.split(",") if n.strip()}
    if bound:
        names.add(bound.lower())
    return frozenset(names)


def host_allowed(host: str | None, names: frozenset[str]) -> bool:
    """True when ``host`` (a Host header's value, ``name[:port]``) names this server."""
    if not host:
        return True  # no name at all is no rebinding: a browser always sends one
    if any(c in host for c in "@/\\?#"):  # no browser sends these in Host; "evil@localhost" would read as localhost
        return False
    try:
        name = (urlsplit("//" + host).hostname or "").rstrip(".")
    except ValueError:  # a malformed port or bracket
        return False
    if not name:
        return False
    if "*" in names or name in names or name in LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def origin_allowed(origin: str | None, names: frozenset[str]) -> bool:
    """True when ``origin`` is absent, opaque (``null``: a sandboxed frame or a file) or names this server."""
    if origin is None or origin == "null":
        return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and host_allowed(netloc, names)


class HostGuard:
    """ASGI middleware: 403 for an HTTP request, and a refused handshake for a WebSocket, whose ``Host`` or
    ``Origin`` names another server. ``bound`` is the address the server listens on (its name is allowed)."""

    def __init__(self, app, bound: str | None = None):
        self.app = app
        self.names = allowed_names(bound)

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if not (host_allowed(headers.get("host"), self.names)
                    and origin_allowed(headers.get("origin"), self.names)):
                if scope["type"] == "websocket":
                    await receive()  # the handshake's connect; a close before accept makes the server answer 403
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(REFUSED)).encode())]})
                await send({"type": "http.response.body", "body": REFUSED})
                return
        await self.app(scope, receive, send)
