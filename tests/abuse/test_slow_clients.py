"""Clients that send too much header, too slowly, or open too many connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

import aiohttp
import pytest

from tests.abuse.conftest import (
    BODY_IDLE_TIMEOUT_S,
    HEADER_TIMEOUT_S,
    MAX_CONNECTIONS,
    Answer,
    StartTarget,
    Target,
    assert_refused,
    exchange,
    processing_trade,
    read_answer,
    request_bytes,
)
from tests.support.paths import DETAIL
from tests.support.paths import SANDBOX_ECHO as ECHO

# The module's tests share a gateway, on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

PAY = "/callbacks/demo/pay"
# What a closed connection may take beyond its timeout: the timer, and this test's own reading.
SLACK_S = 2.0
CALLER_TOKEN = "orders-token-0123456789abcdef"
FORM_TYPE = "application/x-www-form-urlencoded"


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


PATIENT = {"header_timeout_s": 60, "body_idle_timeout_s": 60}
CLOSE = {"Connection": "close"}


async def healthz_on_a_new_connection(target: Target) -> None:
    # Connection: close, so it leaves no idle connection behind to be the next one evicted.
    answer = await exchange(target.port, request_bytes("GET", "/healthz", headers=CLOSE))
    assert answer is not None
    assert answer.status == 200, answer


async def test_a_full_listener_closes_its_oldest_idle_connection_for_a_new_one(
    start_target: StartTarget,
) -> None:
    target = await start_target(limits=PATIENT)
    held = [await asyncio.open_connection("127.0.0.1", target.port) for _ in range(MAX_CONNECTIONS)]
    await healthz_on_a_new_connection(target)
    oldest_reader, _ = held[0]
    async with asyncio.timeout(5):
        assert await oldest_reader.read() == b""
    for _, writer in held:
        writer.close()


async def test_a_full_listener_cuts_off_its_slowest_body_for_a_new_one(
    start_target: StartTarget,
) -> None:
    """Tricklers holding every connection cannot lock out a client that asks promptly."""
    target = await start_target(limits={**PATIENT, "max_in_flight_per_caller": MAX_CONNECTIONS})
    await hang_platform_calls(target)
    head = request_bytes(
        "POST", ECHO, b"a=1", {"Content-Type": FORM_TYPE, "Content-Length": "100000"}
    )
    held = []
    busy = []
    try:
        for _ in range(MAX_CONNECTIONS):
            reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
            writer.write(head)
            await writer.drain()
            held.append((reader, writer))
        # Two clients whose requests then wait on the platform: they cannot be made to give
        # way, so each must make room by cutting off a trickler (or a connection not yet read).
        for _ in range(2):
            _, writer = await asyncio.open_connection("127.0.0.1", target.port)
            writer.write(request_bytes("GET", f"{ECHO}?a=1"))
            busy.append(writer)
        await healthz_on_a_new_connection(target)
        async with asyncio.timeout(5):
            oldest = await read_answer(held[0][0])
        assert_refused(oldest, 408, "body_timeout")
        assert "slowest to arrive" in oldest.body["responseHeader"]["msg"]  # type: ignore[union-attr]
    finally:
        await exchange(target.sandbox_port, request_bytes("DELETE", "/sandbox/faults"))
        for writer in busy + [writer for _, writer in held]:
            writer.close()


async def hang_platform_calls(target: Target) -> None:
    form = {"Content-Type": FORM_TYPE}
    answer = await exchange(
        target.sandbox_port,
        request_bytes("POST", "/sandbox/faults", f"path={ECHO}&hang=true".encode(), form),
    )
    assert answer is not None
    assert answer.status == 200


async def late_request(port: int) -> Answer | None:
    """A client that sends its request only once the server's first bytes have come; None
    if the connection was reset before the whole answer could be read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(10):
            first = await reader.readexactly(1)
            with contextlib.suppress(ConnectionError):
                writer.write(request_bytes("GET", "/healthz"))
                await writer.drain()
            try:
                rest = await reader.read(-1)
            except ConnectionError:
                return None
    finally:
        writer.close()
    answer = asyncio.StreamReader()
    answer.feed_data(first + rest)
    answer.feed_eof()
    return await read_answer(answer)


async def test_a_listener_busy_with_requests_refuses_new_connections(
    start_target: StartTarget,
) -> None:
    """Requests waiting on the platform are never cut off to make room: 503 instead. (Here
    one caller may have every connection in flight; by default it may not: test_in_flight.)"""
    target = await start_target(limits={"max_in_flight_per_caller": MAX_CONNECTIONS})
    await hang_platform_calls(target)
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):
            _, writer = await asyncio.open_connection("127.0.0.1", target.port)
            writer.write(request_bytes("GET", f"{ECHO}?a=1"))
            held.append(writer)
        async with asyncio.timeout(10):
            while (await sandbox_stats(target))["hanging"] < MAX_CONNECTIONS:
                pass
        # Each refused client reads its 503 whole, even one whose request comes after the
        # answer was written: the socket closed at once, so the request's bytes drew a reset
        # that lost the answer (4 of 5 clients saw one).
        for _ in range(5):
            assert_refused(await late_request(target.port), 503, "too_many_connections")
    finally:
        await exchange(target.sandbox_port, request_bytes("DELETE", "/sandbox/faults"))
        for writer in held:
            writer.close()
    async with asyncio.timeout(10):
        while (await sandbox_stats(target))["hanging"]:
            pass
    await healthz_on_a_new_connection(target)


async def sandbox_stats(target: Target) -> dict[str, Any]:
    answer = await exchange(target.sandbox_port, request_bytes("GET", "/sandbox/stats"))
    assert answer is not None
    stats: dict[str, Any] = answer.body["response"]
    return stats


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


@LISTENERS
async def test_a_partial_header_block_behind_a_request_is_timed_and_counted(
    target: Target, listener: str
) -> None:
    port = listener_port(target, listener)
    first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first + b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 5000)
    await writer.drain()
    answered = await read_answer(reader)
    assert answered is not None
    assert answered.status in (200, 404)
    assert_refused(await read_answer(reader), 408, "header_timeout")
    assert time.monotonic() - started < HEADER_TIMEOUT_S + SLACK_S
    writer.close()
    # Too many such bytes are refused at once.
    huge = first + b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(huge)
    # Closed well before the header timeout (with a reset, as bytes were left unread).
    async with asyncio.timeout(HEADER_TIMEOUT_S / 2):
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
    writer.close()


async def test_clients_that_never_read_their_answers_give_way(
    start_target: StartTarget,
) -> None:
    """Answers piling up unread: the connection waits on its client, so it gives way at the
    cap, and is dropped once its answer has gone unread for the idle timeout."""
    target = await start_target(limits={"max_connections": 8})
    # Ten fields of 60 KB: each answer (the sandbox echoes them) is about 600 KB, so a few
    # of them fill any socket buffer.
    body = "&".join(f"f{i}={'x' * 60_000}" for i in range(10)).encode()
    request = request_bytes(
        "POST", ECHO, body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    writers = []
    try:
        async with target.under_abuse(max_growth_mb=96):
            for _ in range(12):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", target.port))
                _, writer = await asyncio.open_connection(sock=sock)
                writer.write(request * 20)
                writers.append(writer)
            # While they are served, every connection is busy and a new one may get 503 (or,
            # not yet read, give way itself to the next newcomer); once their answers back up
            # unread, they give way and new clients are served.
            async with asyncio.timeout(15):
                while True:
                    answer = await exchange(target.port, request_bytes("GET", "/healthz"))
                    if answer is not None and answer.status == 200:
                        break
                    if answer is not None:
                        assert_refused(answer, 503, "too_many_connections")
        await target.process.wait_for_log("answer went unread", timeout_s=15)
    finally:
        for writer in writers:
            writer.transport.abort()


@LISTENERS
async def test_a_partial_header_block_behind_a_request_with_a_body_is_timed(
    target: Target, listener: str
) -> None:
    port = listener_port(target, listener)
    path = path_on(listener)
    partial = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 3000
    framings = [
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
        "\r\nContent-Length: 9\r\n\r\ntradeNo=1".encode(),
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
        "\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ntradeNo=1\r\n0\r\n\r\n".encode(),
    ]
    for request in framings:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request + partial)
        assert await read_answer(reader) is not None
        assert_refused(await read_answer(reader), 408, "header_timeout")
        assert time.monotonic() - started < HEADER_TIMEOUT_S + SLACK_S
        writer.close()


async def test_an_active_upload_is_not_evicted_for_silent_connections(
    start_target: StartTarget,
) -> None:
    target = await start_target(limits=PATIENT)
    chunk = b"\x00" * 100_000
    pieces = 100
    head = (
        f"POST {ECHO} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    opening = b'--b\r\nContent-Disposition: form-data; name="fileData"; filename="f"\r\n\r\n'
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    writer.write(head + b"%x\r\n%s\r\n" % (len(opening), opening))
    silent = []
    for i in range(pieces):
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
        if i % 2 == 0:
            # Silent connections pile up past the cap while the upload goes on.
            silent.append(await asyncio.open_connection("127.0.0.1", target.port))
    closing = b"\r\n--b--\r\n"
    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(closing), closing))
    answer = await read_answer(reader)
    assert answer is not None
    assert answer.status == 200, answer
    assert answer.body["response"]["files"][0]["size"] == len(chunk) * pieces
    writer.close()
    for _, other in silent:
        other.close()


async def test_a_refused_body_is_not_read_for_long(target: Target) -> None:
    """After an early 413, the rest is read and dropped only briefly, then the line closes."""
    head = (
        f"POST {ECHO} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
        "\r\nContent-Length: 100000000000000\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    writer.write(head)
    assert_refused(await read_answer(reader), 413, "body_too_large")
    started = time.monotonic()
    sent = 0
    block = b"a" * 65536
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(15):
            while True:
                writer.write(block)
                await writer.drain()
                sent += len(block)
    assert time.monotonic() - started < 2 + SLACK_S + 1
    writer.transport.abort()


async def test_requests_whose_clients_left_let_go_of_what_they_hold(target: Target) -> None:
    """A client that sends a large wait and leaves: its handler is cancelled, not kept for
    the whole wait with its parsed body."""
    trade_no = await processing_trade(target)
    fields = "&".join(f"x{i}={'v' * 4500}" for i in range(190))
    request = request_bytes(
        "GET",
        f"{DETAIL}?tradeNo={trade_no}&wait=60",
        fields.encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    async with target.under_abuse(max_growth_mb=64):
        for _ in range(300):
            _, writer = await asyncio.open_connection("127.0.0.1", target.port)
            writer.write(request)
            writer.close()
        # Every one of them was read, and let go of as its client left (logged as 499).
        await target.process.wait_for_count(
            "route=/neuopenapi/pay/transactions/tradedetail status=499",
            300,
            timeout_s=30,
            since=target.mark,
        )


async def test_evictions_are_counted_and_summed_up_not_logged_one_by_one(
    start_target: StartTarget,
) -> None:
    """Each connection closed to make room logged an INFO line: 417 lines in one run of 117
    silent connections. They are counted in a metric, and the log says it once."""
    target = await start_target(limits={"max_connections": 4})
    silent = []
    try:
        for _ in range(24):
            _, writer = await asyncio.open_connection("127.0.0.1", target.port)
            silent.append(writer)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(10):
            while await _evicted_idle(session, target) < 20:
                pass
    finally:
        for writer in silent:
            writer.close()
    assert (
        sum("limits.max_connections (4) reached" in line for line in target.process.log_lines) == 1
    )


async def _evicted_idle(session: aiohttp.ClientSession, target: Target) -> float:
    async with session.get(target.url + "/metrics") as response:
        text = await response.text()
    series = 'neu_gateway_connections_evicted_total{waiting_on="idle"} '
    found = [line for line in text.splitlines() if line.startswith(series)]
    return float(found[0].split()[-1]) if found else 0.0
