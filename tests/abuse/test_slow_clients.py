"""Clients that send too much header, too slowly, or open too many connections."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.abuse.conftest import (
    BODY_IDLE_TIMEOUT_S,
    HEADER_TIMEOUT_S,
    MAX_CONNECTIONS,
    StartTarget,
    Target,
    assert_refused,
    exchange,
    read_answer,
    request_bytes,
)

ECHO = "/neuopenapi/sandbox/echo"
PAY = "/callbacks/demo/pay"
# What a closed connection may take beyond its timeout: the timer, and this test's own reading.
SLACK_S = 2.0
CALLER_TOKEN = "orders-token-0123456789abcdef"


def listener_port(target: Target, listener: str) -> int:
    return target.port if listener == "gateway" else target.callbacks_port


def path_on(listener: str) -> str:
    return ECHO if listener == "gateway" else PAY


LISTENERS = pytest.mark.parametrize("listener", ["gateway", "callbacks"])


@LISTENERS
async def test_header_blocks_over_the_limit_are_refused_as_they_arrive(
    target: Target, listener: str
) -> None:
    """40 clients each sending 1 MB of headers: answered 431 long before it has all arrived."""
    port = listener_port(target, listener)
    head = f"POST {path_on(listener)} HTTP/1.1\r\nHost: x\r\n".encode()
    many_headers = head + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 500) for i in range(2000))
    long_line = head + b"X-Long: " + b"v" * 1_000_000 + b"\r\n"
    async with target.under_abuse(max_growth_mb=16):
        answers = await asyncio.gather(
            *(exchange(port, many_headers if i % 2 else long_line) for i in range(40))
        )
    for answer in answers:
        assert_refused(answer, 431, "headers_too_large")


@LISTENERS
async def test_many_headers_and_long_lines_get_the_envelope(target: Target, listener: str) -> None:
    port = listener_port(target, listener)
    path = path_on(listener)
    cases = [
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431, "headers_too_large"),
        (
            f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + b"X-A: b\r\n" * 200 + b"\r\n",
            431,
            "headers_too_large",
        ),
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (f"GET {path} HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n".encode(), 400, "bad_request"),
        (f"GET {path} HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n".encode(), 400, "bad_request"),
        (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode(),
            400,
            "bad_request",
        ),
    ]
    for raw, status, code in cases:
        assert_refused(await exchange(port, raw), status, code)


@LISTENERS
async def test_slow_headers_are_cut_off(target: Target, listener: str) -> None:
    """Slowloris: 40 clients trickling a header byte at a time never get to hold a connection."""
    port = listener_port(target, listener)
    head = f"GET {path_on(listener)} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode()

    async def trickle() -> tuple[float, object]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(head)
        answer_task = asyncio.create_task(read_answer(reader))
        try:
            while not answer_task.done():
                writer.write(b"a")
                # The attacker's own pace: one byte well within the timeout, again and again.
                await asyncio.wait([answer_task], timeout=HEADER_TIMEOUT_S / 4)
        except ConnectionError:
            pass
        answer = await answer_task
        writer.close()
        return time.monotonic() - started, answer

    async with target.under_abuse(max_growth_mb=8):
        results = await asyncio.gather(*(trickle() for _ in range(40)))
    for took, answer in results:
        assert took < HEADER_TIMEOUT_S + SLACK_S
        assert_refused(answer, 408, "header_timeout")  # type: ignore[arg-type]


@LISTENERS
async def test_silent_connections_are_closed(target: Target, listener: str) -> None:
    port = listener_port(target, listener)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    assert await reader.read() == b""  # closed without an answer: nothing was asked
    assert time.monotonic() - started < HEADER_TIMEOUT_S + SLACK_S
    writer.close()


@LISTENERS
async def test_stalled_bodies_are_cut_off(target: Target, listener: str) -> None:
    port = listener_port(target, listener)
    path = path_on(listener)
    form = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "100"}
    multipart = {"Content-Type": "multipart/form-data; boundary=b", "Content-Length": "1000"}
    cases = [request_bytes("POST", path, b"a=1&b=", form)]
    if listener == "gateway":
        cases.append(
            request_bytes(
                "POST",
                path,
                b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nxx',
                multipart,
            )
        )
    async with target.under_abuse(max_growth_mb=8):
        for raw in cases:
            started = time.monotonic()
            answer = await exchange(port, raw)
            assert time.monotonic() - started < BODY_IDLE_TIMEOUT_S + SLACK_S
            assert_refused(answer, 408, "body_timeout")


async def test_connections_beyond_the_cap_are_refused(target: Target) -> None:
    """Existing connections keep working; new ones past limits.max_connections get 503."""
    async with target.under_abuse(max_growth_mb=8):
        # The probe holds one connection to each listener.
        held = [
            await asyncio.open_connection("127.0.0.1", target.port)
            for _ in range(MAX_CONNECTIONS - 1)
        ]
        refused = await exchange(target.port, request_bytes("GET", "/healthz"))
        assert_refused(refused, 503, "too_many_connections")
        for _, writer in held:
            writer.close()
    # Once they are gone, new connections are served again.
    async with asyncio.timeout(10):
        while True:
            answer = await exchange(target.port, request_bytes("GET", "/healthz"))
            if answer is not None and answer.status == 200:
                break


async def test_a_wrong_credential_from_a_trusted_network_is_refused_before_any_read(
    start_target: StartTarget,
) -> None:
    target = await start_target(
        env={"ORDERS_TOKEN": CALLER_TOKEN},
        callers=("{orders: {token_env: ORDERS_TOKEN, apps: [demo], allow: ['* /neuopenapi/*']}}"),
        trusted_networks="[127.0.0.0/8]",
    )
    big = b"a=" + b"x" * 1_000_000
    async with target.under_abuse(max_growth_mb=8):
        for authorization in (b"Basic b3JkZXJzOng=", b"Token abc", b"Bearer ", b"Bearer \xff\xfe"):
            raw = request_bytes(
                "POST", ECHO, big, {"Content-Type": "application/x-www-form-urlencoded"}
            ).replace(
                b"Host: 127.0.0.1\r\n",
                b"Host: 127.0.0.1\r\nAuthorization: " + authorization + b"\r\n",
            )
            assert_refused(await exchange(target.port, raw), 401, "unauthenticated")
