"""A caller's max_in_flight: past it, 429 too_many_in_flight at once, before the body, and the
connection let go; a request counts from its admission until its answer is sent, and gives its
place back however it ends; the default, for callers without one and requests without a
token; a reload."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.config.load import from_mapping
from gateway.core.errors import TooManyInFlight
from gateway.egress.keys import IN_FLIGHT
from gateway.egress.ratelimits import InFlight
from gateway.http.keys import METRICS
from gateway.runtime.app import create_app
from gateway.runtime.reload import apply_config
from tests.conftest import guarded
from tests.support.paths import DETAIL, ECHO
from tests.support.platform_double import APPID, SECRET, PlatformDouble
from tests.support.waiting import until

Client = TestClient[Any, Any]
FORM = "application/x-www-form-urlencoded"
ORDERS_TOKEN = "orders-token-0123456789abcdef"
NOTIFIER_TOKEN = "notifier-token-0123456789abcdef"
ORDERS = {"Authorization": f"Bearer {ORDERS_TOKEN}"}
NOTIFIER = {"Authorization": f"Bearer {NOTIFIER_TOKEN}"}
ENVIRON = {"S": SECRET, "ORDERS_TOKEN": ORDERS_TOKEN, "NOTIFIER_TOKEN": NOTIFIER_TOKEN}
MAX_BODY_BYTES = 4096
BODY_IDLE_TIMEOUT_S = 0.3


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def document(platform_url: str, orders_in_flight: int | None = 1, **limits: Any) -> dict[str, Any]:
    orders: dict[str, Any] = {"token_env": "ORDERS_TOKEN", "apps": ["demo", "gone"]}
    if orders_in_flight is not None:
        orders["max_in_flight"] = orders_in_flight
    return {
        "apps": {
            "demo": {"appid": APPID, "secret_env": "S", "upstream": platform_url},
            # Refuses every connection: each call fails, after its retries.
            "gone": {
                "appid": APPID,
                "secret_env": "S",
                "upstream": f"http://127.0.0.1:{closed_port()}",
            },
        },
        "default_app": "demo",
        "timeouts": {"connect_s": 2, "total_s": 5},
        "retries": {"attempts": 2, "backoff_s": 0.01},
        "limits": {
            "max_body_bytes": MAX_BODY_BYTES,
            "body_idle_timeout_s": BODY_IDLE_TIMEOUT_S,
            **limits,
        },
        "callers": {
            "orders": {**orders, "allow": ["* /neuopenapi/*"]},
            "notifier": {
                "token_env": "NOTIFIER_TOKEN",
                "apps": ["demo"],
                "allow": ["* /neuopenapi/*"],
            },
        },
    }


async def start(aiohttp_client: Any, config: dict[str, Any]) -> Client:
    client: Client = await aiohttp_client(guarded(create_app(from_mapping(config, ENVIRON))))
    return client


def in_flight(gateway: Client, caller: str = "orders") -> int:
    return gateway.app[IN_FLIGHT].count(caller)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)
        }
        payload = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(status_line.split()[1]), headers, json.loads(payload) if payload else {})


async def send(
    gateway: Client, head: str, body: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A request written as given (lines joined with CRLF, Host added), on a new connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)
    lines = head.split("\n")
    lines.insert(1, "Host: 127.0.0.1")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    return reader, writer


def orders_head(method: str, target: str, *extra: str) -> str:
    return "\n".join(
        [f"{method} {target} HTTP/1.1", f"Authorization: Bearer {ORDERS_TOKEN}", *extra]
    )


async def hold_two(
    gateway: Client, platform: PlatformDouble
) -> list[asyncio.Future[aiohttp.ClientResponse]]:
    """Two requests of `orders` held at the platform (which must hang)."""
    held = [
        asyncio.ensure_future(gateway.get(ECHO, params={"n": str(n)}, headers=ORDERS))
        for n in range(2)
    ]
    await until(lambda: len(platform.received) == 2)
    return held


async def statuses_of(requests: list[asyncio.Future[aiohttp.ClientResponse]]) -> list[int]:
    found = []
    for request in requests:
        response = await request
        await response.read()
        found.append(response.status)
    return found


async def test_past_its_max_in_flight_a_caller_is_answered_429_at_once_and_let_go(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    gateway = await start(aiohttp_client, document(platform_url, orders_in_flight=2))
    platform.hang = True
    held = await hold_two(gateway, platform)
    assert in_flight(gateway) == 2

    reader, writer = await send(gateway, orders_head("GET", f"{ECHO}?n=3"))
    answer = await read_answer(reader)
    assert answer.status == 429
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["connection"] == "close"
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["x-request-id"]
    assert answer.body == {
        "responseHeader": {
            "status": 429,
            "msg": "caller 'orders' already has 2 requests in flight, and "
            "callers.orders.max_in_flight allows 2; retry when one of them is answered",
        },
        "response": None,
        "error": "too_many_in_flight",
    }
    async with asyncio.timeout(5):
        assert await reader.read() == b"", "the refused connection is closed"
    writer.close()

    # A POST is refused before its body is sent: only its head is written here.
    head = orders_head("POST", ECHO, f"Content-Type: {FORM}", "Content-Length: 3000")
    reader, writer = await send(gateway, head)
    answer = await read_answer(reader)
    assert (answer.status, answer.body["error"]) == (429, "too_many_in_flight")
    assert answer.headers["connection"] == "close"
    writer.close()
    # Asked at Expect: 100-continue, the same answer, and no 100 Continue before it.
    reader, writer = await send(gateway, head + "\nExpect: 100-continue")
    answer = await read_answer(reader)
    assert (answer.status, answer.body["error"]) == (429, "too_many_in_flight")
    assert answer.headers["connection"] == "close"
    writer.close()
    assert len(platform.received) == 2, "a refused request is not forwarded"

    # Another caller has its own count.
    platform.hang = False
    response = await gateway.get(ECHO, params={"a": "1"}, headers=NOTIFIER)
    assert response.status == 200
    metrics = await (await gateway.get("/metrics")).text()
    assert 'neu_gateway_requests_in_flight{caller="orders"} 2.0' in metrics
    assert 'caller="orders",method="GET",route="other",status="429"} 1.0' in metrics
    assert 'caller="orders",method="POST",route="other",status="429"} 2.0' in metrics

    platform.release.set()
    assert await statuses_of(held) == [200, 200]
    await until(lambda: in_flight(gateway) == 0)
    metrics = await (await gateway.get("/metrics")).text()
    assert 'neu_gateway_requests_in_flight{caller="orders"} 0.0' in metrics


async def test_a_refusal_is_logged_with_its_caller(
    aiohttp_client: Any,
    platform_url: str,
    platform: PlatformDouble,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "neu_gateway.access")
    gateway = await start(aiohttp_client, document(platform_url))
    platform.hang = True
    held = asyncio.ensure_future(gateway.get(ECHO, headers=ORDERS))
    await until(lambda: len(platform.received) == 1)
    response = await gateway.get(ECHO, headers=ORDERS)
    assert response.status == 429
    [line] = [
        record.getMessage() for record in caplog.records if "status=429" in record.getMessage()
    ]
    assert "caller=orders app=none method=GET route=other status=429" in line
    platform.release.set()
    assert await statuses_of([held]) == [200]


async def test_a_request_counts_until_its_answer_is_sent(
    aiohttp_client: Any,
    platform_url: str,
    platform: PlatformDouble,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An answer larger than the socket buffers, to a client that does not read it: handled,
    logged, and still in flight until the client is gone."""
    caplog.set_level(logging.INFO, "neu_gateway.access")
    gateway = await start(aiohttp_client, document(platform_url))
    platform.body = b'{"responseHeader": {"status": 200, "msg": "OK"}, "response": "%s"}' % (
        b"x" * 12_000_000
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gateway.server.port))
    _, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        f"GET {ECHO} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ORDERS_TOKEN}\r\n\r\n".encode()
    )
    # Its access line is written once the handler is done, before the answer goes out.
    await until(lambda: any("status=200" in record.getMessage() for record in caplog.records))
    response = await gateway.get(ECHO, headers=ORDERS)
    assert response.status == 429
    assert in_flight(gateway) == 1
    writer.transport.abort()
    await until(lambda: in_flight(gateway) == 0)
    platform.body = None
    response = await gateway.get(ECHO, headers=ORDERS)
    assert response.status == 200


async def test_requests_pipelined_on_one_connection_are_in_flight_one_at_a_time(
    aiohttp_client: Any, platform_url: str
) -> None:
    """Each is answered before the next is handled, so a caller with one place gets them all
    answered, however soon each ends (a refusal ends without waiting on anything)."""
    gateway = await start(aiohttp_client, document(platform_url, orders_in_flight=1))
    heads = [
        orders_head("GET", f"{ECHO}?n=1", "Host: x"),
        orders_head("GET", ECHO, "Host: x", "X-Neu-App: nope"),
        orders_head("GET", f"{ECHO}?n=2", "Host: x"),
        orders_head("GET", f"{ECHO}?n=3", "Host: x", "Connection: close"),
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.server.port)
    writer.write(b"".join(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" for head in heads))
    statuses = [(await read_answer(reader)).status for _ in heads]
    assert statuses == [200, 404, 200, 200]
    writer.close()


@dataclass
class Case:
    gateway: Client
    platform: PlatformDouble


async def answered(case: Case) -> None:
    response = await case.gateway.get(ECHO, params={"a": "1"}, headers=ORDERS)
    assert response.status == 200


async def unknown_app(case: Case) -> None:
    response = await case.gateway.get(ECHO, headers={**ORDERS, "X-Neu-App": "nope"})
    assert (await response.json())["error"] == "unknown_app"


async def wrong_method(case: Case) -> None:
    response = await case.gateway.post(DETAIL, data={"tradeNo": "T"}, headers=ORDERS)
    assert (await response.json())["error"] == "method_not_allowed"


async def invalid_path(case: Case) -> None:
    reader, writer = await send(case.gateway, orders_head("GET", "/neuopenapi//echo"))
    assert (await read_answer(reader)).body["error"] == "invalid_path"
    writer.close()


async def invalid_params(case: Case) -> None:
    response = await case.gateway.get(DETAIL, headers=ORDERS)
    assert (await response.json())["error"] == "validation_failed"


async def declared_too_large(case: Case) -> None:
    head = orders_head(
        "POST", ECHO, f"Content-Type: {FORM}", f"Content-Length: {MAX_BODY_BYTES + 1}"
    )
    reader, writer = await send(case.gateway, head)
    assert (await read_answer(reader)).body["error"] == "body_too_large"
    writer.close()


async def refused_at_expect(case: Case) -> None:
    head = orders_head(
        "POST",
        ECHO,
        f"Content-Type: {FORM}",
        f"Content-Length: {MAX_BODY_BYTES + 1}",
        "Expect: 100-continue",
    )
    reader, writer = await send(case.gateway, head)
    assert (await read_answer(reader)).body["error"] == "body_too_large"
    writer.close()


async def unsupported_type(case: Case) -> None:
    response = await case.gateway.post(
        ECHO, data=b"a", headers={**ORDERS, "Content-Type": "text/plain"}
    )
    assert (await response.json())["error"] == "unsupported_media_type"


async def upstream_unreachable_after_retries(case: Case) -> None:
    response = await case.gateway.get(ECHO, headers={**ORDERS, "X-Neu-App": "gone"})
    assert (await response.json())["error"] == "upstream_unreachable"
    assert response.headers["X-Neu-Attempts"] == "2"


async def an_upload(case: Case) -> None:
    form = aiohttp.FormData()
    form.add_field("fileData", b"x" * 1000, filename="a.bin")
    response = await case.gateway.post(ECHO, data=form, headers=ORDERS)
    assert response.status == 200


async def body_stalled(case: Case) -> None:
    head = orders_head("POST", ECHO, f"Content-Type: {FORM}", "Content-Length: 1000")
    reader, writer = await send(case.gateway, head, b"a=1")
    assert (await read_answer(reader)).body["error"] == "body_timeout"
    writer.close()


async def left_mid_body(case: Case) -> None:
    head = orders_head("POST", ECHO, f"Content-Type: {FORM}", "Content-Length: 1000")
    _, writer = await send(case.gateway, head, b"a=1")
    await until(lambda: in_flight(case.gateway) == 1)
    writer.transport.abort()


async def left_while_the_platform_held_it(case: Case) -> None:
    case.platform.hang = True
    _, writer = await send(case.gateway, orders_head("GET", f"{ECHO}?a=1"))
    await until(lambda: len(case.platform.received) == 1)
    writer.transport.abort()


async def left_a_trade_wait(case: Case) -> None:
    case.platform.hang = True
    _, writer = await send(case.gateway, orders_head("GET", f"{DETAIL}?tradeNo=T1&wait=30"))
    await until(lambda: len(case.platform.received) == 1)
    assert in_flight(case.gateway) == 1
    writer.transport.abort()


@pytest.mark.parametrize(
    "ending",
    [
        answered,
        unknown_app,
        wrong_method,
        invalid_path,
        invalid_params,
        declared_too_large,
        refused_at_expect,
        unsupported_type,
        upstream_unreachable_after_retries,
        an_upload,
        body_stalled,
        left_mid_body,
        left_while_the_platform_held_it,
        left_a_trade_wait,
    ],
    ids=lambda ending: ending.__name__,
)
async def test_however_a_request_ends_it_gives_its_place_back(
    aiohttp_client: Any,
    platform_url: str,
    platform: PlatformDouble,
    ending: Callable[[Case], Awaitable[None]],
) -> None:
    gateway = await start(aiohttp_client, document(platform_url, orders_in_flight=1))
    await ending(Case(gateway, platform))
    await until(lambda: in_flight(gateway) == 0)
    # The gauge was told of its end too (it counts as requests come and go, not at a scrape).
    metrics = gateway.app[METRICS].registry
    await until(
        lambda: (
            metrics.get_sample_value("neu_gateway_requests_in_flight", {"caller": "orders"}) == 0
        )
    )
    # The one place is free: the next request goes through.
    platform.hang = False
    response = await gateway.get(ECHO, params={"after": "1"}, headers=ORDERS)
    assert response.status == 200


async def test_the_count_is_given_back_when_a_task_returns_fails_or_is_cancelled() -> None:
    changes: list[tuple[str, int]] = []
    flights = InFlight(lambda caller, change: changes.append((caller, change)))
    release = asyncio.Event()

    async def request(outcome: str) -> None:
        flights.hold("orders", True, 3, True)
        await release.wait()
        if outcome == "fails":
            raise RuntimeError("a bug")

    tasks = {
        outcome: asyncio.ensure_future(request(outcome))
        for outcome in ("returns", "fails", "is cancelled")
    }
    await until(lambda: flights.count("orders") == 3)

    async def one_more() -> None:
        flights.hold("orders", True, 3, True)

    with pytest.raises(TooManyInFlight):
        await one_more()
    assert flights.count("orders") == 3, "a refusal counts nothing"
    assert changes == [("orders", 1)] * 3
    tasks["is cancelled"].cancel()
    release.set()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    await until(lambda: flights.count("orders") == 0)
    await until(lambda: len(changes) == 6)
    assert changes[3:] == [("orders", -1)] * 3


async def test_requests_without_a_token_count_as_one_caller_under_the_default(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    """No callers (a sidecar): every request is the anonymous caller, held to a quarter of
    limits.max_connections."""
    config = {
        "apps": {"demo": {"appid": APPID, "secret_env": "S", "upstream": platform_url}},
        "limits": {"max_connections": 8},
    }
    gateway = await start(aiohttp_client, config)
    platform.hang = True
    held = [asyncio.ensure_future(gateway.get(ECHO, params={"n": str(n)})) for n in range(2)]
    await until(lambda: len(platform.received) == 2)
    response = await gateway.get(ECHO)
    assert response.status == 429
    assert (await response.json())["responseHeader"]["msg"] == (
        "caller 'anonymous' already has 2 requests in flight, and "
        "limits.max_in_flight_per_caller allows 2; retry when one of them is answered"
    )
    platform.release.set()
    assert await statuses_of(held) == [200, 200]
    await until(lambda: in_flight(gateway, "anonymous") == 0)


async def test_a_trusted_network_counts_as_one_caller_apart_from_the_configured_ones(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    config = document(platform_url, orders_in_flight=None, max_in_flight_per_caller=1)
    config["trusted_networks"] = ["127.0.0.0/8"]
    gateway = await start(aiohttp_client, config)
    platform.hang = True
    trusted = asyncio.ensure_future(gateway.get(ECHO))
    orders = asyncio.ensure_future(gateway.get(ECHO, headers=ORDERS))
    await until(lambda: len(platform.received) == 2)
    response = await gateway.get(ECHO)
    assert response.status == 429
    assert "caller 'trusted' already has 1 requests in flight" in (await response.text())
    response = await gateway.get(ECHO, headers=ORDERS)
    assert response.status == 429
    platform.release.set()
    assert await statuses_of([trusted, orders]) == [200, 200]


async def test_a_reload_applies_a_new_max_in_flight_to_new_requests_only(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    gateway = await start(aiohttp_client, document(platform_url, orders_in_flight=2))
    platform.hang = True
    held = await hold_two(gateway, platform)

    # Down to 1: the two in flight go on; a new one is refused.
    apply_config(gateway.app, from_mapping(document(platform_url, orders_in_flight=1), ENVIRON))
    response = await gateway.get(ECHO, headers=ORDERS)
    assert response.status == 429
    assert "already has 2 requests in flight, and callers.orders.max_in_flight allows 1" in (
        await response.text()
    )
    # Up to 3: one more goes.
    apply_config(gateway.app, from_mapping(document(platform_url, orders_in_flight=3), ENVIRON))
    held.append(asyncio.ensure_future(gateway.get(ECHO, params={"n": "2"}, headers=ORDERS)))
    await until(lambda: len(platform.received) == 3)
    assert (await gateway.get(ECHO, headers=ORDERS)).status == 429
    # Back to the default (a quarter of 1024): the requests in flight still count.
    apply_config(gateway.app, from_mapping(document(platform_url, orders_in_flight=None), ENVIRON))
    assert in_flight(gateway) == 3
    platform.release.set()
    assert await statuses_of(held) == [200, 200, 200]
    await until(lambda: in_flight(gateway) == 0)
