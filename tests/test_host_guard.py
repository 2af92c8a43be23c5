"""DNS rebinding: a page on another site that re-points its name at this machine sends its own name in Host and
Origin. Every endpoint, Streamlit's and the app's, refuses such requests; localhost names, IP addresses, the bound
address and GEL_ALLOWED_HOSTS pass."""

from __future__ import annotations

import asyncio
import http.client
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from components.host_guard import HostGuard, allowed_names, host_allowed, origin_allowed

NONE = frozenset()


@pytest.mark.parametrize("host", ["localhost", "localhost:8501", "127.0.0.1:8501", "[::1]:8501", "app.localhost",
                                  "192.168.1.20:8501", "LOCALHOST.:8501", None, ""])
def test_local_names_and_addresses_pass(host):
    assert host_allowed(host, NONE)


@pytest.mark.parametrize("host", ["evil.example:8501", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io",
                                  "[::1", "@evil.example", "evil.example@localhost", "localhost/x"])
def test_other_names_are_refused(host):
    assert not host_allowed(host, NONE)


def test_the_allow_list_and_the_bound_address_add_names():
    names = allowed_names(bound="lab.internal", env=" Lab.Example.org , other.net.")
    assert names == {"lab.internal", "lab.example.org", "other.net"}
    assert host_allowed("lab.example.org:8501", names) and host_allowed("lab.internal", names)
    assert not host_allowed("evil.example", names)
    assert host_allowed("anything.example", allowed_names(env="*"))


def test_an_origin_must_name_this_server_too():
    assert origin_allowed(None, NONE) and origin_allowed("null", NONE)
    assert origin_allowed("http://localhost:8501", NONE) and origin_allowed("http://127.0.0.1:8501", NONE)
    assert not origin_allowed("http://evil.example:8501", NONE) and not origin_allowed("garbage", NONE)


def _call(scope: dict) -> list[dict]:
    """Run the guard in front of an app that answers 200 (or accepts the WebSocket); what it sent."""
    sent, reached = [], []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "websocket.connect"} if scope["type"] == "websocket" else {"type": "http.request"}

    async def send(message):
        sent.append(message)

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, HostGuard(app, bound="127.0.0.1")(scope, receive, send)).result()
    return sent, reached


@pytest.mark.parametrize("kind,path", [("http", "/api/live/r1"), ("http", "/_stcore/health"),
                                       ("http", "/static/plotly.min.js"), ("websocket", "/_stcore/stream")])
def test_the_guard_refuses_a_rebinding_request_on_every_endpoint(kind, path):
    evil = [(b"host", b"evil.example:8501"), (b"origin", b"http://evil.example:8501")]
    sent, reached = _call({"type": kind, "path": path, "headers": evil})
    assert not reached
    if kind == "websocket":
        assert sent == [{"type": "websocket.close", "code": 1008}]
    else:
        assert sent[0]["status"] == 403 and b"GEL_ALLOWED_HOSTS" in sent[1]["body"]
    good = [(b"host", b"localhost:8501"), (b"origin", b"http://localhost:8501")]
    sent, reached = _call({"type": kind, "path": path, "headers": good})
    assert reached == [path] and sent[0]["type"] in ("websocket.accept", "http.response.start")


def _get(base_url: str, path: str, host: str, headers: dict | None = None) -> int:
    u = urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        return conn.getresponse().status
    finally:
        conn.close()


def test_the_served_app_refuses_a_rebinding_host_on_its_own_and_streamlits_endpoints(streamlit_server):
    port = urlsplit(streamlit_server).port
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "streamlit"}
    for host, expected in ((f"evil.example:{port}", 403), (f"localhost:{port}", None)):
        origin = {"Origin": f"http://{host}"}
        codes = [_get(streamlit_server, p, host) for p in ("/_stcore/health", "/", "/api/live/r-none")]
        ws = _get(streamlit_server, "/_stcore/stream", host, {**upgrade, **origin})
        if expected:
            assert codes == [403, 403, 403] and ws == 403
        else:
            assert codes == [200, 200, 404] and ws == 101
