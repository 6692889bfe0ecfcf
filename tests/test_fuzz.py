"""Arbitrary bytes and params into the real server's parsers: never a 5xx, a crash or a hang.

The gateway and a trivial upstream run on loopback in a thread of their own for the whole
module, so hypothesis can send hundreds of requests with a plain blocking client.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import connection_limits, create_app
from gateway.listener import GuardedRunner
from gateway.state import CONFIG
from tests.conftest import gateway_config

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PATHS = [
    "/neuopenapi/test/echo",
    "/neuopenapi/notify/sendNotify",
    "/neuopenapi/oauth/mini/user/info",
]


async def _accept_anything(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"responseHeader": {"status": 200, "msg": "OK"}, "response": True})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        upstream_app = web.Application(client_max_size=1 << 26)
        upstream_app.router.add_route("*", "/{tail:.*}", _accept_anything)
        upstream = web.AppRunner(upstream_app)
        await upstream.setup()
        await web.TCPSite(upstream, "127.0.0.1", 0).start()
        upstream_port = upstream.addresses[0][1]
        app = create_app(gateway_config(f"http://127.0.0.1:{upstream_port}"))
        gateway = GuardedRunner(app, connection_limits(app[CONFIG]))
        await gateway.setup()
        await web.TCPSite(gateway, "127.0.0.1", 0).start()
        state["port"], state["stop"] = gateway.addresses[0][1], asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await gateway.cleanup()
        await upstream.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(20), "the gateway did not start"
    yield state["port"]
    loop.call_soon_threadsafe(state["stop"].set)
    thread.join(20)
    loop.close()


def send(
    port: int, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_handled(status: int, body: bytes) -> None:
    assert status < 500, body[:300]
    if status >= 400:
        envelope = json.loads(body)
        assert envelope["responseHeader"]["status"] == status
        assert envelope["error"]


content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/json",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "text/plain",
        "application/octet-stream",
    ]
)


@FUZZ
@given(st.sampled_from(PATHS), content_types, st.binary(max_size=2000))
def test_arbitrary_bodies(port: int, path: str, content_type: str, body: bytes) -> None:
    assert_handled(*send(port, "POST", path, body, {"Content-Type": content_type}))


@FUZZ
@given(st.sampled_from(PATHS), st.binary(max_size=300))
def test_arbitrary_query_strings(port: int, path: str, raw: bytes) -> None:
    # '%', '&', '=' and '+' stay raw, so broken escapes and odd pairs reach the parser.
    assert_handled(*send(port, "GET", f"{path}?{quote(raw, safe='%&=+')}"))


params = st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=10)


@FUZZ
@given(st.sampled_from(PATHS), params, st.sampled_from(["form", "json", "query"]))
def test_arbitrary_params(port: int, path: str, fields: dict[str, str], how: str) -> None:
    if how == "query":
        assert_handled(*send(port, "GET", f"{path}?{urlencode(fields)}"))
    elif how == "json":
        body = json.dumps(fields).encode()
        assert_handled(*send(port, "POST", path, body, {"Content-Type": "application/json"}))
    else:
        body = urlencode(fields).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        assert_handled(*send(port, "POST", path, body, headers))


parts = st.lists(
    st.tuples(
        st.text(max_size=15),
        st.one_of(st.none(), st.text(max_size=15)),
        st.binary(max_size=300),
    ),
    max_size=6,
)


@FUZZ
@given(parts, st.booleans())
def test_arbitrary_multipart(
    port: int, body_parts: list[tuple[str, str | None, bytes]], close: bool
) -> None:
    boundary = uuid.uuid4().hex
    body = b""
    for name, filename, data in body_parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode(
            "utf-8", "replace"
        )
        body += data + b"\r\n"
    if close:
        body += f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    assert_handled(*send(port, "POST", "/neuopenapi/test/echo", body, headers))
