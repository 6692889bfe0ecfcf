"""The lean HTTP/1.1 client against a hostile or broken upstream, and hostile concurrency:
what each answer must become for the caller, through the client or the whole gateway."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import random
import re
import socket
import time
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from yarl import URL

from gateway.core.errors import UpstreamBadResponse
from gateway.egress.keys import UPSTREAM
from gateway.runtime.reload import apply_config
from gateway.upstream.aiohttp_client import WaryConnector
from gateway.upstream.lean.pool import REST_S, Pool, Slots
from gateway.upstream.lean.wire import request_head
from tests.conftest import GatewayFactory, gateway_config
from tests.support.answers import envelope_of
from tests.support.lean_calls import call, pool_for
from tests.support.paths import ECHO as ECHO_PATH
from tests.support.paths import UPLOAD as UPLOAD_PATH
from tests.support.pki import Pki
from tests.support.platform_double import APPID
from tests.support.scripted_server import OK, answering, ok, read_request, tls_upstream, upstream
from tests.support.waiting import until

# --- 1xx interim answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    "interim",
    [
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n", id="100"),
        pytest.param(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", id="103"),
    ],
)
async def test_an_interim_1xx_before_the_answer_is_skipped(interim: bytes) -> None:
    """RFC 9110 15.2: a client MUST be able to parse 1xx answers before the final one, even
    unasked for (aiohttp's client skips them; only 101 is refused)."""
    async with upstream(answering(interim + ok())) as served:
        answer = await call(pool_for(served.url))
        assert (answer.status, answer.body) == (200, OK)


async def test_through_the_gateway_a_103_early_hints_does_not_become_a_502(
    make_gateway: GatewayFactory,
) -> None:
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    async with upstream(answering(interim + ok())) as served:
        gateway = await make_gateway(upstream=served.url)
        response = await gateway.get(ECHO_PATH)
        assert response.status == 200
        assert await response.read() == OK


# --- a connection that never gets made ---------------------------------------------------


def _unanswered_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A loopback port whose accept queue is full: a new connection's SYN goes unanswered,
    so connecting hangs until the client gives up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    # Only once a blocking probe times out is the queue known full.
    probe = socket.socket()
    probe.settimeout(0.2)
    try:
        probe.connect(("127.0.0.1", port))
    except TimeoutError:
        pass
    else:  # pragma: no cover - a kernel that accepts past the backlog
        pytest.skip("this kernel does not leave connections to a full backlog hanging")
    finally:
        probe.close()
    return listener, fillers


async def test_through_the_gateway_a_connect_timeout_is_a_504(
    make_gateway: GatewayFactory,
) -> None:
    """A connection that is never accepted ends at timeouts.connect_s as 504 upstream_timeout (a
    TimeoutError is an OSError, and must not pass for an unreachable host)."""
    listener, fillers = _unanswered_listener()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        gateway = await make_gateway(
            upstream=url, timeouts={"connect_s": 0.2, "total_s": 3}, retries={"attempts": 1}
        )
        started = time.monotonic()
        response = await gateway.get(ECHO_PATH)
        assert time.monotonic() - started < 2.5
        await envelope_of(response, 504, "upstream_timeout")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# --- a head that never ends --------------------------------------------------------------


async def test_a_header_line_that_never_ends_is_refused_at_the_head_cap() -> None:
    """httptools calls on_header only once a header line ends, and keeps the value itself until
    then: the head's size is checked on the bytes too, so 16 MiB of one header value is
    refused once it passes 64 KiB, not held until the line ends."""
    import tracemalloc

    sent_all = asyncio.Event()
    total = 16 << 20

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Long: ")
        for _ in range(total // (64 * 1024)):
            writer.write(b"a" * 64 * 1024)
            await writer.drain()
        sent_all.set()
        await reader.read()

    async with upstream(script) as served:
        pool = pool_for(served.url)
        url = URL(f"http://{pool.host_header}{ECHO_PATH}")
        head = request_head("GET", url, pool.host_header, CIMultiDict(), None)
        tracemalloc.start()
        try:
            calling = asyncio.create_task(pool.request(head, None, 1 << 20, 10, 2))
            async with asyncio.timeout(10):
                await asyncio.wait(
                    [calling, asyncio.ensure_future(sent_all.wait())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        try:
            assert calling.done(), (
                f"{total} bytes of one header line sent and the call still waits "
                f"(peak {peak >> 20} MiB traced)"
            )
            with pytest.raises(UpstreamBadResponse, match="bytes of headers"):
                await calling
        finally:
            calling.cancel()
        assert peak < 4 << 20, f"{peak} bytes held for one answer's head"


# --- the connection cap under cancellation -------------------------------------------------


async def test_a_wait_for_a_slot_cancelled_as_a_slot_is_given_back_stays_a_cancellation() -> None:
    """A wait for a slot cancelled (its call timed out, its client went away) in the turn in
    which a slot is given back, and the cancelled waiter dropped from the queue: the call ends
    cancelled (a 504 through asyncio.timeout), not in an error of the queue's."""
    slots = Slots(1)
    deadline = asyncio.get_running_loop().time() + 5
    await slots.take(deadline)
    waiting = asyncio.create_task(slots.take(deadline))
    await asyncio.sleep(0)  # wait-ok: one turn, so the task runs up to its wait
    assert slots._waiters
    waiting.cancel()
    slots.give_back()  # the holder finishes in the same turn
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert slots._taken == 0


async def test_through_the_gateway_calls_that_time_out_waiting_for_a_slot_are_all_504(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The same race, as it happens: pool.max_connections 1, timeouts.total_s short, calls
    queueing for the one connection while the upstream answers. Every call ends 200 or 504."""

    async def prompt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            # Answers spread over time, so timeouts and releases meet in all orders.
            await asyncio.sleep(random.uniform(0, 0.002))  # wait-ok: the upstream's pace
            writer.write(ok())
            await writer.drain()

    async with upstream(prompt) as served:
        gateway = await make_gateway(
            upstream=served.url,
            pool={"max_connections": 1},
            timeouts={"connect_s": 1, "total_s": 0.01},
            retries={"attempts": 1},
            breaker={"failures": 1000},
        )
        statuses: dict[int, int] = {}
        for _ in range(10):
            responses = await asyncio.gather(*[gateway.get(ECHO_PATH) for _ in range(60)])
            for response in responses:
                statuses[response.status] = statuses.get(response.status, 0) + 1
                await response.read()
        assert set(statuses) <= {200, 504}, statuses
        assert "ValueError" not in caplog.text


# --- trailers ---------------------------------------------------------------------------

CHUNKED_WITH_TRAILERS = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    b"%x\r\n%s\r\n0\r\nX-Injected: from-the-trailer\r\nContent-Encoding: gzip\r\n\r\n"
    % (len(OK), OK)
)


async def test_trailer_fields_are_not_merged_into_the_answers_headers() -> None:
    """httptools reports trailer fields through on_header, after the body. RFC 9110 6.5.1: a
    recipient must not merge a trailer field into the header section unless its definition
    says how (aiohttp drops them too)."""
    async with upstream(answering(CHUNKED_WITH_TRAILERS)) as served:
        answer = await call(pool_for(served.url))
        assert answer.body == OK
        assert "X-Injected" not in answer.headers
        assert "Content-Encoding" not in answer.headers


async def test_through_the_gateway_a_trailer_neither_breaks_nor_reaches_the_answer(
    make_gateway: GatewayFactory,
) -> None:
    """A trailer `Content-Encoding: gzip` must not make a plain JSON body 'gzip', and no
    trailer reaches the caller as a header."""
    async with upstream(answering(CHUNKED_WITH_TRAILERS, CHUNKED_WITH_TRAILERS)) as served:
        gateway = await make_gateway(upstream=served.url)
        response = await gateway.get(ECHO_PATH)
        assert response.status == 200, await response.text()
        assert await response.read() == OK
        assert "X-Injected" not in response.headers


def stalling_after(headers: bytes) -> Any:
    """Answers with `headers` and the body's first byte, then sends nothing more."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n{")
        await writer.drain()
        await reader.read()

    return script


# --- an announced length past the cap ----------------------------------------------------


async def test_through_the_gateway_a_content_length_past_the_cap_is_refused_at_once(
    make_gateway: GatewayFactory,
) -> None:
    """An answer announcing Content-Length: 1 GB when limits.max_response_bytes is 1 MiB is
    refused as soon as its head arrives (502), not read until the cap or timeouts.total_s."""

    async with upstream(stalling_after(b"Content-Length: 1000000000\r\n")) as served:
        gateway = await make_gateway(
            upstream=served.url,
            timeouts={"connect_s": 1, "total_s": 2},
            limits={"max_response_bytes": 1 << 20},
            retries={"attempts": 1},
        )
        started = time.monotonic()
        response = await gateway.get(ECHO_PATH)
        message = await envelope_of(response, 502, "upstream_bad_response")
        assert "max_response_bytes" in message
        assert time.monotonic() - started < 1


# --- a kept-alive connection closing as it is reused ---------------------------------------


async def test_a_connection_the_sweeper_just_closed_is_not_reused() -> None:
    """The keep-alive sweeper (and stray bytes) close a connection a loop turn before asyncio
    reports it lost: a call in that turn must not take it (its request would be dropped
    unwritten). Here the sweep is made to land in that turn."""
    async with upstream(answering(ok(), ok())) as served:
        pool = pool_for(served.url)
        await call(pool)
        [idle] = pool._idle
        idle.idle_since -= 60  # idle past keepalive_s
        pool._sweep()
        assert (await call(pool, body=b"x=1")).body == OK


async def test_a_connection_idle_past_keepalive_s_is_not_reused_before_the_sweep() -> None:
    async with upstream(answering(ok(), ok())) as served:
        pool = pool_for(served.url)
        await call(pool)
        [idle] = pool._idle
        idle.idle_since -= 60
        assert (await call(pool)).body == OK
        assert idle.lost
        assert served.connections == 2


def once_then_hang_up(received: list[bytes], answered: asyncio.Event | None = None) -> Any:
    """Answers the first request on each connection; the next one it reads, then closes, as a
    server timing out an idle connection just as the request arrives."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        writer.write(ok())
        await writer.drain()
        if answered is not None:
            answered.set()
        received.append(await read_request(reader))

    return script


async def test_through_the_gateway_a_get_on_a_connection_closed_under_it_is_retried(
    make_gateway: GatewayFactory,
) -> None:
    received: list[bytes] = []
    async with upstream(once_then_hang_up(received)) as served:
        gateway = await make_gateway(upstream=served.url, retries={"attempts": 3})
        for _ in range(4):
            response = await gateway.get(ECHO_PATH)
            assert response.status == 200
            assert await response.read() == OK


async def test_through_the_gateway_a_post_on_a_connection_closed_under_it_is_sent_once(
    make_gateway: GatewayFactory,
) -> None:
    received: list[bytes] = []
    probed = asyncio.Event()
    async with upstream(once_then_hang_up(received, probed)) as served:
        gateway = await make_gateway(upstream=served.url, retries={"attempts": 3})
        async with asyncio.timeout(5):
            await probed.wait()  # the start-up probe's answer: its connection is kept
        assert (await gateway.get(ECHO_PATH)).status == 200
        posts_before = sum(r.startswith(b"POST") for r in received)
        response = await gateway.post(ECHO_PATH, data={"x": "1"})
        posts = sum(r.startswith(b"POST") for r in received) - posts_before
        assert posts == 1
        if response.status != 200:
            await envelope_of(response, 502, "upstream_unreachable")


# --- TLS ---------------------------------------------------------------------------------


def tls_app(url: str, pki: Pki) -> dict[str, Any]:
    demo = {"appid": APPID, "secret_env": "DEMO_SECRET", "upstream": url}
    return {"demo": {**demo, "tls": {"ca_file": str(pki.ca)}}}


async def test_through_the_gateway_a_tls_answer_cut_by_a_bare_fin_is_not_relayed(
    make_gateway: GatewayFactory, pki: Pki
) -> None:
    """An answer without a length ends with the connection; over TLS only a close_notify says
    the server ended it, and asyncio reports a bare TCP FIN (which anyone on the path can
    send) the same way. Such an answer is refused rather than relayed possibly cut short
    (RFC 8446 6.1, RFC 9112 9.8)."""

    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + OK[:20])
        await writer.drain()
        writer.get_extra_info("socket").shutdown(socket.SHUT_WR)  # no close_notify
        await reader.read()

    async with tls_upstream(pki, truncated) as url:
        gateway = await make_gateway(upstream=url, apps=tls_app(url, pki))
        response = await gateway.get(ECHO_PATH)
        body = await response.read()
        assert (response.status, body) != (200, OK[:20])
        await envelope_of(response, 502, "upstream_bad_response")


async def test_through_the_gateway_a_tls_alert_mid_answer_is_not_a_handshake_failure(
    make_gateway: GatewayFactory, pki: Pki
) -> None:
    """A bad record after the status line and part of the body: the handshake succeeded long
    before. The caller is not told of a handshake failure (a TLS error is never retried)."""

    async def alert(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + OK[:20])
        await writer.drain()
        os.write(writer.get_extra_info("socket").fileno(), b"\x15\x03\x03\x00\x02\x02\x28")
        await reader.read()

    async with tls_upstream(pki, alert) as url:
        gateway = await make_gateway(upstream=url, apps=tls_app(url, pki))
        response = await gateway.get(ECHO_PATH)
        assert response.status == 502
        body = await response.json()
        assert "handshake" not in body["responseHeader"]["msg"], body
        assert body["error"] in ("upstream_bad_response", "upstream_unreachable"), body


# --- slow and endless answers (these hold up) ---------------------------------------------


async def test_through_the_gateway_an_answer_dribbled_a_byte_at_a_time_ends_at_total_s(
    make_gateway: GatewayFactory,
) -> None:
    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for byte in ok(b"x" * 10_000):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.01)  # wait-ok: the pace of the dribble

    async with upstream(dribble) as served:
        gateway = await make_gateway(upstream=served.url, timeouts={"connect_s": 1, "total_s": 1})
        started = time.monotonic()
        response = await gateway.get(ECHO_PATH)
        await envelope_of(response, 504, "upstream_timeout")
        assert time.monotonic() - started < 2


async def test_through_the_gateway_a_huge_chunked_answer_is_cut_at_the_cap(
    make_gateway: GatewayFactory,
) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000;ext=" + b"e" * 100 + b"\r\n" + b"x" * 0x10000 + b"\r\n"
        for _ in range(1000):
            writer.write(chunk)
            await writer.drain()
        await reader.read()

    async with upstream(endless) as served:
        gateway = await make_gateway(
            upstream=served.url,
            limits={"max_response_bytes": 1 << 20},
            timeouts={"connect_s": 1, "total_s": 5},
        )
        started = time.monotonic()
        message = await envelope_of(await gateway.get(ECHO_PATH), 502, "upstream_bad_response")
        assert "max_response_bytes" in message
        assert time.monotonic() - started < 2


async def test_through_the_gateway_a_body_that_stops_after_the_head_ends_at_total_s(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with upstream(stalling_after(b"Content-Length: 100\r\n")) as served:
        gateway = await make_gateway(upstream=served.url, timeouts={"connect_s": 1, "total_s": 1})
        await envelope_of(await gateway.get(ECHO_PATH + "?tradeNo=T"), 504, "upstream_timeout")
        assert "sign=" not in caplog.text
        assert "DEMO" not in caplog.text


# --- a reload with calls in flight ---------------------------------------------------------


async def test_a_reload_with_calls_in_flight_keeps_pool_max_connections(
    make_gateway: GatewayFactory,
) -> None:
    """pool is kept until a restart: a reload with a call in flight must not give the calls
    after it a fresh count of pool.max_connections."""
    release = asyncio.Event()
    echo_requests: list[bytes] = []

    async def holds(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_request(reader)
            if b"/neuopenapi/" in head:
                echo_requests.append(head)
                await release.wait()
            writer.write(ok())
            await writer.drain()

    async with upstream(holds) as served:
        config = {"pool": {"max_connections": 1}, "timeouts": {"connect_s": 1, "total_s": 5}}
        gateway = await make_gateway(upstream=served.url, **config)
        sessions = gateway.app[UPSTREAM]._sessions
        first = asyncio.ensure_future(gateway.get(ECHO_PATH))
        await until(lambda: len(echo_requests) == 1)
        apply_config(gateway.app, gateway_config(served.url, **config))
        second = asyncio.ensure_future(gateway.get(ECHO_PATH))

        def queued() -> bool:
            return any(origins._slots._waiters for origins in sessions.lean._origins.values())

        # Either the second call waits for the one connection, or it got one of its own.
        await until(lambda: queued() or len(echo_requests) == 2)
        release.set()
        assert (await first).status == 200
        assert (await second).status == 200
        assert served.most_open == 1, f"{served.most_open} connections under a cap of 1"


# --- compressed answers -------------------------------------------------------------------


async def test_through_the_gateway_a_gzip_answer_of_two_members_is_relayed_whole(
    make_gateway: GatewayFactory,
) -> None:
    """RFC 1952: a gzip file is one or more members; a decoder reads them all (as aiohttp's
    client does)."""
    body = gzip.compress(OK[:20]) + gzip.compress(OK[20:])
    answer = ok(body, b"Content-Encoding: gzip\r\n")
    async with upstream(answering(answer, answer)) as served:
        gateway = await make_gateway(upstream=served.url)
        response = await gateway.get(ECHO_PATH)
        assert response.status == 200
        assert await response.read() == OK


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(gzip.compress(OK)[:-12], id="cut short"),
        pytest.param(gzip.compress(OK) + b"not gzip", id="trailing bytes"),
    ],
)
async def test_through_the_gateway_a_gzip_answer_that_does_not_end_right_is_a_502(
    make_gateway: GatewayFactory, body: bytes
) -> None:
    """A gzip stream without its end is a cut answer, and bytes after its end are not gzip:
    both are refused, never relayed as a complete 200."""
    answer = ok(body, b"Content-Encoding: gzip\r\n")
    async with upstream(answering(answer, answer)) as served:
        gateway = await make_gateway(upstream=served.url)
        await envelope_of(await gateway.get(ECHO_PATH), 502, "upstream_bad_response")


async def test_through_the_gateway_a_reused_tls_connection_hung_up_does_not_blame_mtls(
    make_gateway: GatewayFactory, pki: Pki
) -> None:
    """A POST on a kept-alive https connection that the server closes as the request comes
    (its idle timeout) is not sent again, and the caller is not told to set a client
    certificate: that connection's handshake carried answers before."""
    received: list[bytes] = []
    probed = asyncio.Event()
    async with tls_upstream(pki, once_then_hang_up(received, probed)) as url:
        gateway = await make_gateway(upstream=url, apps=tls_app(url, pki))
        async with asyncio.timeout(5):
            await probed.wait()
        assert (await gateway.get(ECHO_PATH)).status == 200
        response = await gateway.post(ECHO_PATH, data={"x": "1"})
        message = await envelope_of(response, 502, "upstream_unreachable")
        assert "client certificate" not in message


# --- answers nobody asked for --------------------------------------------------------------
#
# An upstream that sends more than one answer to a request: the extra bytes must never become
# another call's answer. Each answer carries the id its request asked for (X-Id), and the
# extra one an id no call asks for.

_ID = re.compile(rb"[?&]id=(\d+)")
STRAY_ID = 1 << 40
EXTRA_SHAPES = ("same write", "204 with a body", "304 with a body", "body past its length")


def echo(request_id: int) -> bytes:
    body = b'{"id":%d}' % request_id
    return b"HTTP/1.1 200 OK\r\nX-Id: %d\r\nContent-Length: %d\r\n\r\n%s" % (
        request_id,
        len(body),
        body,
    )


def with_extra(shape: str, request_id: int) -> bytes:
    """The answer to `request_id` and, in the same write, a whole answer behind it."""
    extra = echo(STRAY_ID + request_id)
    if shape in ("204 with a body", "304 with a body"):
        status = b"204 No Content" if shape.startswith("204") else b"304 Not Modified"
        head = b"HTTP/1.1 %s\r\nX-Id: %d\r\nContent-Length: %d\r\n\r\n"
        return head % (status, request_id, len(extra)) + extra
    if shape == "body past its length":
        body = b'{"id":%d}' % request_id
        head = b"HTTP/1.1 200 OK\r\nX-Id: %d\r\nContent-Length: %d\r\n\r\n"
        return head % (request_id, len(body)) + body + extra
    return echo(request_id) + extra


def request_id(head: bytes) -> int:
    found = _ID.search(head)
    assert found is not None, head
    return int(found.group(1))


async def call_for(pool: Pool, request_id: int) -> int:
    """The id the answer to `request_id` carries."""
    url = URL(f"http://{pool.host_header}{ECHO_PATH}?id={request_id}", encoded=True)
    head = request_head("GET", url, pool.host_header, CIMultiDict(), None)
    answer = await pool.request(head, None, 1 << 20, 5, 2)
    return int(answer.headers["X-Id"])


def extra_on(*requests: int, shape: str) -> Any:
    """Echoes every request's id; the requests numbered in `requests` (1 for the first one
    on any connection) get an extra answer behind theirs."""
    seen = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        while True:
            asked = request_id(await read_request(reader))
            seen += 1
            writer.write(with_extra(shape, asked) if seen in requests else echo(asked))
            await writer.drain()

    return script


@pytest.mark.parametrize("shape", EXTRA_SHAPES)
async def test_an_answer_with_more_behind_it_is_kept_only_on_a_fresh_connection(
    shape: str,
) -> None:
    """On a connection that carried answers before, an answer with more behind it may be a
    stray of the last exchange that came as this request went: refused, so the caller gets
    an error rather than another's answer. On a fresh connection the first answer is the
    request's own: kept. Either way the connection is dropped."""
    async with upstream(extra_on(2, 3, shape=shape)) as served:
        pool = pool_for(served.url)
        assert await call_for(pool, 1) == 1
        with pytest.raises(UpstreamBadResponse, match="more than its answer"):
            await call_for(pool, 2)
        assert await call_for(pool, 3) == 3
        assert await call_for(pool, 4) == 4
        assert served.connections == 3


async def test_after_a_stray_a_connection_carries_a_call_only_once_it_has_rested() -> None:
    """Once the upstream has sent a stray, a connection that answered less than REST_S ago is
    not reused (a stray arriving later than its answer would be read as the next one's): a
    new connection is opened, at the route's cap in place of one kept."""
    async with upstream(extra_on(1, shape="same write")) as served:
        pool = pool_for(served.url, limit=1)
        assert await call_for(pool, 1) == 1
        assert await call_for(pool, 2) == 2
        assert await call_for(pool, 3) == 3
        assert served.connections == 3
        assert len(pool._idle) == 1  # the cap of 1 kept
        [idle] = pool._idle
        idle.idle_since -= REST_S
        assert await call_for(pool, 4) == 4
        assert served.connections == 3


async def test_after_a_stray_one_come_but_not_yet_read_never_becomes_the_next_answer() -> None:
    """A connection has rested, and an extra answer has come on it that the loop has not read
    yet (asyncio runs the callbacks queued before a poll ahead of what the poll read): a
    call that takes it must not send on it before the loop has read that. It is dropped, and
    the call goes on a new connection."""
    stray_asked = asyncio.Event()
    stray_written = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            asked = request_id(await read_request(reader))
            writer.write(with_extra("same write", 1) if asked == 1 else echo(asked))
            await writer.drain()
            if asked == 2:
                await stray_asked.wait()
                writer.write(echo(STRAY_ID + 2))
                stray_written.set()

    async with upstream(script) as served:
        pool = pool_for(served.url)
        assert await call_for(pool, 1) == 1  # the pool has seen a stray
        assert await call_for(pool, 2) == 2
        [rested] = pool._idle
        rested.idle_since -= REST_S
        stray_asked.set()
        await stray_written.wait()  # this task runs before the loop reads the stray
        assert await call_for(pool, 3) == 3
        assert rested.lost
        assert served.connections == 3


async def test_with_none_rested_the_connection_that_has_rested_longest_is_taken() -> None:
    """Calls back to back: the connection that went back to the pool first is taken, so a
    stray behind the last answer has the most time to arrive while its connection rests.
    Once all have rested REST_S, the most recent again (the others age out)."""
    hold = asyncio.Event()
    connections: list[int] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(connections) + 1
        connections.append(number)
        while True:
            head = await read_request(reader)
            if request_id(head) == 1:
                await hold.wait()
            writer.write(echo(number))  # which connection answered
            await writer.drain()

    async with upstream(script) as served:
        pool = pool_for(served.url)
        first = asyncio.ensure_future(call_for(pool, 1))
        await served.until(lambda: served.connections == 1)
        assert await call_for(pool, 2) == 2  # a second connection, back first
        hold.set()
        assert await first == 1
        assert await call_for(pool, 3) == 2, "not the connection that has rested longest"
        for idle in pool._idle:
            idle.idle_since -= REST_S
        assert await call_for(pool, 4) == 2, "not the most recent of the rested ones"


class OneInTen:
    """A hostile upstream: one answer in ten (and the first, in the same write, so a pool sees
    a stray at once) has another behind it, in the same write (204 or 304 with a body, a body
    past its length, a second answer) or 5 ms later; it counts the strays it sent."""

    def __init__(self) -> None:
        self.rng = random.Random(4)
        self.strays = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = request_id(await read_request(reader))
            if asked == 0 or self.rng.random() < 0.1:
                self.strays += 1
                shape = (
                    "same write" if asked == 0 else self.rng.choice([*EXTRA_SHAPES, "5 ms later"])
                )
                if shape == "5 ms later":
                    writer.write(echo(asked))
                    loop.call_later(0.005, writer.write, echo(STRAY_ID + asked))
                else:
                    writer.write(with_extra(shape, asked))
            else:
                writer.write(echo(asked))
            await writer.drain()


async def test_concurrent_callers_get_their_own_answer_or_an_error_never_anothers() -> None:
    """A hostile upstream: one answer in ten has another behind it, in the same write (204 or
    304 with a body, a body past its length, a second answer) or 5 ms later, and many callers
    call through one pool back to back. Once the pool has seen a stray (the first answer
    here), each caller gets its own answer or an error, never the extra one or another's."""
    hostile = OneInTen()

    async with upstream(hostile) as served:
        pool = pool_for(served.url)
        assert await call_for(pool, 0) == 0
        ids = iter(range(1, 2001))
        outcomes = {"own": 0, "error": 0}

        async def caller() -> None:
            for asked in ids:
                try:
                    got = await call_for(pool, asked)
                except UpstreamBadResponse:
                    outcomes["error"] += 1
                    continue
                assert got == asked, f"call {asked} got the answer {got}"
                outcomes["own"] += 1

        await asyncio.gather(*(caller() for _ in range(50)))
        pool.close()
    assert hostile.strays > 100
    assert outcomes["own"] > 1500, outcomes


# --- the same through aiohttp's client (calls through a proxy, uploads) ------------------


async def aiohttp_call(session: aiohttp.ClientSession, url: str, request_id: int) -> int:
    async with session.get(f"{url}{ECHO_PATH}?id={request_id}") as response:
        await response.read()
        return int(response.headers["X-Id"])


async def test_aiohttps_client_closes_a_connection_that_heard_a_stray_while_resting() -> None:
    """An extra answer that arrives while the connection rests in aiohttp's pool: aiohttp
    parses it and keeps it (what WaryConnector relies on: `len()` and `should_close` show
    it), and would hand it to the next call on that connection; the connection is closed."""
    rested = asyncio.Event()
    stray_written = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            asked = request_id(await read_request(reader))
            writer.write(echo(asked))
            await writer.drain()
            if asked == 1:
                await rested.wait()
                writer.write(echo(STRAY_ID + 1))
                await writer.drain()
                stray_written.set()

    async with upstream(script) as served:
        connector = WaryConnector(limit=10)
        async with aiohttp.ClientSession(connector=connector) as session:
            assert await aiohttp_call(session, served.url, 1) == 1
            [protocol] = list(connector._rested)
            assert len(protocol) == 0
            assert not protocol.should_close
            rested.set()
            await stray_written.wait()
            async with asyncio.timeout(5):
                # The loop reads the stray in a later turn; nothing else signals it.
                while len(protocol) == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0)  # wait-ok: until the loop has read the stray
            assert protocol.should_close
            assert await aiohttp_call(session, served.url, 2) == 2
            assert served.connections == 2
            assert not protocol.is_connected()


async def test_aiohttps_client_after_a_stray_reuses_a_connection_only_once_rested() -> None:
    """An answer with another behind it in the same read (aiohttp closes that connection):
    from then on a connection that rested less than REST_S is closed rather than reused, and
    one that rested longer is reused."""
    async with upstream(extra_on(1, shape="same write")) as served:
        connector = WaryConnector(limit=10)
        async with aiohttp.ClientSession(connector=connector) as session:
            assert await aiohttp_call(session, served.url, 1) == 1
            assert await aiohttp_call(session, served.url, 2) == 2
            assert await aiohttp_call(session, served.url, 3) == 3
            assert served.connections == 3
            [protocol] = [each for each in connector._rested if each.is_connected()]
            connector._rested[protocol] -= REST_S
            assert await aiohttp_call(session, served.url, 4) == 4
            assert served.connections == 3


async def test_aiohttps_client_concurrent_callers_get_their_own_answer_or_an_error() -> None:
    """As the lean client's test above, through the connector aiohttp's client uses for calls
    through a proxy and for uploads."""
    hostile = OneInTen()

    async with upstream(hostile) as served:
        connector = WaryConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector) as session:
            assert await aiohttp_call(session, served.url, 0) == 0
            ids = iter(range(1, 2001))
            outcomes = {"own": 0, "error": 0}

            async def caller() -> None:
                for asked in ids:
                    try:
                        got = await aiohttp_call(session, served.url, asked)
                    except aiohttp.ClientError:
                        outcomes["error"] += 1
                        continue
                    assert got == asked, f"call {asked} got the answer {got}"
                    outcomes["own"] += 1

            await asyncio.gather(*(caller() for _ in range(50)))
    assert hostile.strays > 100
    assert outcomes["own"] > 1500, outcomes


# --- answers a caller could not read -----------------------------------------------------

UNREADABLE = [
    pytest.param(b"HTTP/1.1 600 Beyond\r\nContent-Length: %d\r\n\r\n%s" % (len(OK), OK), id="600"),
    pytest.param(b"HTTP/1.1 999 Beyond\r\nContent-Length: %d\r\n\r\n%s" % (len(OK), OK), id="999"),
    pytest.param(b"HTTP/1.1 099 Below\r\nContent-Length: %d\r\n\r\n%s" % (len(OK), OK), id="099"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n" + gzip.compress(OK), id="gzip"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
        % (len(gzip.compress(OK)), gzip.compress(OK)),
        id="gzip, chunked",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%x\r\n%s\r\n\r\n0\r\n\r\n" % (len(OK) + 4 + len(b"%x" % len(OK)), len(OK), OK),
        id="chunked twice",
    ),
    pytest.param(ok(extra=b"X-Odd: a\x01b\r\n"), id="a control character in a header"),
]


async def read_whole_request(reader: asyncio.StreamReader) -> None:
    head = await read_request(reader)
    if b"transfer-encoding: chunked" in head.lower():
        await reader.readuntil(b"\r\n0\r\n\r\n")


def once_and_close(answer: bytes) -> Any:
    """The whole request read, the answer sent, the connection closed (an answer without a
    length ends there)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_whole_request(reader)
        writer.write(answer)
        await writer.drain()

    return script


async def through(gateway: Any, transport: str) -> Any:
    """A call through the lean client (a GET) or through aiohttp's (an upload)."""
    if transport == "lean":
        return await gateway.get(ECHO_PATH)
    form = aiohttp.FormData()
    form.add_field("fileData", b"x" * 100, filename="a.bin")
    return await gateway.post(UPLOAD_PATH, data=form)


@pytest.mark.parametrize("transport", ["lean", "aiohttp"])
@pytest.mark.parametrize("answer", UNREADABLE)
async def test_through_the_gateway_an_answer_a_caller_could_not_read_is_a_502(
    make_gateway: GatewayFactory, answer: bytes, transport: str
) -> None:
    """A status outside 100 to 599 (llhttp reads 099 as 99, which would pass for an interim
    answer), a transfer coding other than chunked (which would reach the caller still
    applied), a control character in a header value: 502 upstream_bad_response, through
    either client alike, never relayed as it came."""
    async with upstream(once_and_close(answer)) as served:
        gateway = await make_gateway(upstream=served.url, retries={"attempts": 1})
        response = await through(gateway, transport)
        await envelope_of(response, 502, "upstream_bad_response")


@pytest.mark.parametrize("transport", ["lean", "aiohttp"])
async def test_through_the_gateway_the_platforms_own_x_neu_headers_are_not_relayed(
    make_gateway: GatewayFactory, transport: str
) -> None:
    """X-Neu-* are the gateway's own headers: one the platform sends (a forged X-Neu-Cache,
    X-Neu-Wait, X-Neu-Attempts) never reaches the caller as if the gateway had set it."""
    forged = b"X-Neu-Cache: hit\r\nx-neu-wait: done\r\nX-Neu-Attempts: 9\r\nX-Neu-Other: 1\r\n"
    async with upstream(once_and_close(ok(extra=forged + b"X-Kept: yes\r\n"))) as served:
        gateway = await make_gateway(upstream=served.url)
        response = await through(gateway, transport)
        assert response.status == 200, await response.text()
        assert await response.read() == OK
        assert response.headers["X-Kept"] == "yes"
        assert not [name for name in response.headers if name.lower().startswith("x-neu-")]
