"""The gateway's middleware on a small real app: each request's id, its errors rendered in the
platform's envelope, and its one access line (and count)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.config.live import LiveConfig
from gateway.core.errors import BodyTooLarge, NotFinal, RequestTimeout
from gateway.core.headers import REQUEST_ID_HEADER
from gateway.http.keys import CLOCK, LIVE_CONFIG, METRICS, ROUTE
from gateway.http.middlewares import (
    CLIENT_CLOSED,
    error_response,
    gateway_middleware,
)
from gateway.metrics import Metrics
from tests.conftest import gateway_config
from tests.support.access_lines import AccessLines, capturing
from tests.support.clock import MutableClock
from tests.support.paths import ECHO
from tests.support.rawhttp import statuses

MAX_HEADER_BYTES = 1024
HELD = web.AppKey("held", asyncio.Event)


@pytest.fixture
def access_lines() -> Iterator[AccessLines]:
    with capturing() as lines:
        yield lines


async def ok(request: web.Request) -> web.Response:
    request[ROUTE] = ECHO
    return web.Response(body=b"12345")


async def not_final(request: web.Request) -> web.Response:
    raise NotFinal()


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("a bug, with a secret=hunter2 in its message")


async def held(request: web.Request) -> web.Response:
    request.app[HELD].set()
    await asyncio.Event().wait()
    raise AssertionError("never answered")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def client(aiohttp_client: Any) -> TestClient[Any, Any]:
    config = gateway_config("http://127.0.0.1:9", limits={"max_header_bytes": MAX_HEADER_BYTES})
    app = web.Application(middlewares=[gateway_middleware])
    app[CLOCK] = MutableClock()
    app[METRICS] = Metrics()
    app[LIVE_CONFIG] = LiveConfig(config, 0.0)
    app[HELD] = asyncio.Event()
    app.router.add_get("/ok", ok)
    app.router.add_post("/ok", ok)
    app.router.add_get("/not-final", not_final)
    app.router.add_post("/not-final", not_final)
    app.router.add_get("/crash", crash)
    app.router.add_get("/held", held)
    app.router.add_get("/healthz", healthz)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


async def envelope_of(response: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(await response.read())
    return document


# -- request id ------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["abc-123", "trace.1:span_2", "x" * 128])
async def test_a_callers_request_id_is_kept(client: TestClient[Any, Any], given: str) -> None:
    response = await client.get("/ok", headers={REQUEST_ID_HEADER: given})
    assert response.headers[REQUEST_ID_HEADER] == given


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("x" * 129, id="too long"),
        pytest.param("a b", id="a space"),
        pytest.param("a/b", id="a slash"),
        pytest.param("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", id="a JWT"),
        pytest.param("ab" * 32, id="a sign's 64 hex digits"),
    ],
)
async def test_a_request_id_that_could_break_a_line_or_leak_is_replaced(
    client: TestClient[Any, Any], given: str
) -> None:
    response = await client.get("/ok", headers={REQUEST_ID_HEADER: given})
    made = response.headers[REQUEST_ID_HEADER]
    assert made != given
    assert len(made) == 32
    int(made, 16)


async def test_each_request_without_an_id_gets_its_own(client: TestClient[Any, Any]) -> None:
    ids = {(await client.get("/ok")).headers[REQUEST_ID_HEADER] for _ in range(20)}
    assert len(ids) == 20


async def test_an_admin_path_gets_an_id_too(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz", headers={REQUEST_ID_HEADER: "probe-1"})
    assert response.headers[REQUEST_ID_HEADER] == "probe-1"


# -- errors in the envelope ------------------------------------------------------------------


async def test_a_gateway_error_is_answered_in_the_envelope(client: TestClient[Any, Any]) -> None:
    response = await client.get("/not-final")
    envelope = await envelope_of(response)
    assert response.status == NotFinal.status
    assert envelope["error"] == NotFinal.code
    assert envelope["responseHeader"] == {"status": NotFinal.status, "msg": NotFinal.message}
    assert envelope["response"] is None
    assert response.headers[REQUEST_ID_HEADER]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", "/nowhere", 404, "not_found", id="no route: 404"),
        pytest.param("DELETE", "/ok", 405, "method_not_allowed", id="no such method: 405"),
    ],
)
async def test_the_routers_refusals_are_answered_in_the_envelope(
    client: TestClient[Any, Any], method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(method, path)
    assert response.status == status
    assert (await envelope_of(response))["error"] == code


async def test_a_405_says_what_is_allowed(client: TestClient[Any, Any]) -> None:
    response = await client.request("DELETE", "/ok")
    assert response.headers["Allow"] == "GET, POST"


async def test_an_unhandled_error_is_a_500_that_quotes_nothing_of_it(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/crash")
    body = await response.read()
    assert response.status == 500
    assert json.loads(body)["error"] == "internal_error"
    assert b"hunter2" not in body
    assert b"RuntimeError" not in body
    request_id = response.headers[REQUEST_ID_HEADER]
    assert f"unhandled error, request_id={request_id}" in caplog.text


@pytest.mark.parametrize("error", [BodyTooLarge(), RequestTimeout()], ids=lambda e: e.code)
def test_an_error_that_leaves_a_body_unread_closes_the_connection(error: Any) -> None:
    response = error_response(error, "id-1")
    assert response.keep_alive is False
    assert response.headers[REQUEST_ID_HEADER] == "id-1"


def test_an_error_of_a_read_request_keeps_the_connection() -> None:
    assert error_response(NotFinal(), "id-1").keep_alive is None


async def test_a_body_refused_unread_ends_the_connection(client: TestClient[Any, Any]) -> None:
    """A POST refused before its body is read: the rest of the body is not drained, the
    connection closes after the answer."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(
            b"POST /not-final HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 10
        )
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    assert statuses(head) == [NotFinal.status]
    assert b"\r\nConnection: close\r\n" in head


async def test_an_error_for_a_body_that_arrived_whole_keeps_the_connection(
    client: TestClient[Any, Any],
) -> None:
    response = await client.post("/not-final", data=b"a=1")
    assert response.status == NotFinal.status
    assert "close" not in response.headers.get("Connection", "").lower()


async def test_headers_over_max_header_bytes_in_all_are_431(
    client: TestClient[Any, Any],
) -> None:
    """Each header under aiohttp's own limit, together over limits.max_header_bytes."""
    headers = {f"X-Pad-{n}": "p" * (MAX_HEADER_BYTES // 3) for n in range(4)}
    response = await client.get("/ok", headers=headers)
    assert response.status == 431
    assert (await envelope_of(response))["error"] == "headers_too_large"


# -- the access line -------------------------------------------------------------------------


async def test_a_request_gets_one_access_line_and_is_counted(
    client: TestClient[Any, Any], access_lines: AccessLines
) -> None:
    response = await client.get("/ok?accessToken=abc", headers={REQUEST_ID_HEADER: "r-1"})
    assert response.status == 200
    line = await access_lines.next_line()
    assert line["request_id"] == "r-1"
    assert (line["method"], line["status"], line["route"]) == ("GET", 200, ECHO)
    assert line["path"] == "/ok"  # the query string can carry a token: never logged
    assert line["bytes_out"] == 5
    assert (line["caller"], line["app"]) == ("none", "none")
    assert line["duration_ms"] >= 0
    metrics = client.app[METRICS]
    metrics.flush()
    labels = {"app": "none", "caller": "none", "route": ECHO}
    counted = metrics.registry.get_sample_value(
        "neu_gateway_requests_total", {**labels, "method": "GET", "status": "200"}
    )
    assert counted == 1
    assert access_lines.lines == []


async def test_an_error_gets_its_access_line_with_its_status(
    client: TestClient[Any, Any], access_lines: AccessLines
) -> None:
    await client.get("/not-final")
    line = await access_lines.next_line()
    assert (line["status"], line["route"]) == (NotFinal.status, "other")


async def test_probes_get_no_access_line(
    client: TestClient[Any, Any], access_lines: AccessLines
) -> None:
    await client.get("/healthz")
    await client.get("/ok")
    assert (await access_lines.next_line())["path"] == "/ok"


async def test_a_request_whose_client_left_is_logged_as_499(
    client: TestClient[Any, Any], access_lines: AccessLines
) -> None:
    assert client.port is not None
    _, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(10):
        await client.app[HELD].wait()
    writer.close()
    line = await access_lines.next_line()
    assert (line["status"], line["path"]) == (CLIENT_CLOSED, "/held")
