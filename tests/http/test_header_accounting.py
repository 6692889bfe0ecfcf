"""The listener counts and times every byte of every header block, wherever a piece of the
stream splits it, and answers pipelined requests up to a bad one, then refuses that one and
closes.

The gateway and a trivial upstream run on loopback in a thread of their own for the module,
so hypothesis can open many connections with a plain blocking socket.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.http.keys import CONFIG
from gateway.http.server import GuardedRunner
from gateway.runtime.app import create_app
from gateway.runtime.listeners import connection_limits
from tests.conftest import gateway_config
from tests.support.rawhttp import statuses

MAX_HEADER_BYTES = 1024
# The whole block (request line and headers) may take 2 * max_header_bytes + 1024.
BLOCK_LIMIT = 2 * MAX_HEADER_BYTES + 1024
HEADER_TIMEOUT_S = 0.6
ECHO = b"/neuopenapi/test/echo"
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


async def _accept_anything(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"responseHeader": {"status": 200, "msg": "OK"}, "response": True})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        upstream = web.Application()
        upstream.router.add_route("*", "/{tail:.*}", _accept_anything)
        upstream_runner = web.AppRunner(upstream)
        await upstream_runner.setup()
        await web.TCPSite(upstream_runner, "127.0.0.1", 0).start()
        config = gateway_config(
            f"http://127.0.0.1:{upstream_runner.addresses[0][1]}",
            limits={"max_header_bytes": MAX_HEADER_BYTES, "header_timeout_s": HEADER_TIMEOUT_S},
        )
        app = create_app(config)
        gateway = GuardedRunner(app, connection_limits(app[CONFIG]))
        await gateway.setup()
        await web.TCPSite(gateway, "127.0.0.1", 0).start()
        state["port"] = gateway.addresses[0][1]
        state["stop"] = asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await gateway.cleanup()
        await upstream_runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(20), "the gateway did not start"
    yield state["port"]
    loop.call_soon_threadsafe(state["stop"].set)
    thread.join(20)
    loop.close()


def exchange(
    port: int,
    pieces: list[bytes],
    gap_s: float = 0.0,
    timeout_s: float = 10,
    sends_may_fail: bool = True,
) -> bytes:
    """Sends each piece in a write of its own (apart by gap_s); returns all the answers up to
    the server's close. A send the server cuts off (a reset) fails the exchange unless
    `sends_may_fail`: a client past a limit may be cut off, its answer still read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in pieces:
                if gap_s:
                    time.sleep(gap_s)  # wait-ok: the client's pacing is what is tested
                conn.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            if not sends_may_fail:
                raise
        answers = b""
        while chunk := conn.recv(65536):
            answers += chunk
        return answers


def form_post(body: bytes) -> bytes:
    return (
        b"POST " + ECHO + b" HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def chunked_post(body: bytes, extension: bytes = b"") -> bytes:
    chunks = b"".join(
        f"{len(body[i : i + 7]):x}".encode() + extension + b"\r\n" + body[i : i + 7] + b"\r\n"
        for i in range(0, len(body), 7)
    )
    return (
        b"POST " + ECHO + b" HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )


def test_an_unfinished_header_block_after_a_body_from_an_earlier_piece_gets_431(
    port: int,
) -> None:
    """The body's head came first; its body and a long unfinished header block behind it came
    in one later write. The block was not counted (no 431, no 408): held until keep-alive."""
    head, body = form_post(b"a=1&b=2345")[:-10], form_post(b"a=1&b=2345")[-10:]
    unfinished = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * (BLOCK_LIMIT + 100)
    answers = exchange(port, [head, body + unfinished], gap_s=0.2)
    assert statuses(answers) == [200, 431]


def test_a_short_unfinished_header_block_after_a_body_gets_408_at_the_header_timeout(
    port: int,
) -> None:
    head, body = form_post(b"a=1&b=2345")[:-10], form_post(b"a=1&b=2345")[-10:]
    began = time.monotonic()
    answers = exchange(port, [head, body + b"GET /healthz HTTP/1.1\r\nHo"], gap_s=0.2)
    assert statuses(answers) == [200, 408]
    # Timed from the block's first byte, not from the keep-alive timeout (75 s).
    assert time.monotonic() - began < HEADER_TIMEOUT_S + 5


@pytest.mark.parametrize(
    "post",
    [
        pytest.param(form_post(b"a=1&b=2"), id="content-length body"),
        pytest.param(chunked_post(b"a=1&b=2&c=3456789"), id="chunked body"),
    ],
)
def test_pipelined_requests_are_answered_up_to_a_bad_one_then_400_and_close(
    port: int, post: bytes
) -> None:
    """A POST with its body, two GETs and a bad line in one write: the POST got 400 "the
    request body is malformed", the GETs no answer, the connection no close."""
    answers = exchange(port, [post + HEALTH + HEALTH + b"BAD LINE\r\n\r\n"])
    assert statuses(answers) == [200, 200, 200, 400]
    assert b'"error": "bad_request"' in answers.split(b" 400 ")[1]


def test_a_request_with_one_stray_byte_behind_it_is_answered(port: int) -> None:
    """Headers, body and one stray byte in one write: the POST got no answer at all."""
    answers = exchange(port, [form_post(b"a=1") + b"\x01"])
    assert statuses(answers) == [200, 400]


def test_a_stray_byte_that_may_begin_a_request_is_timed_as_a_header_block(port: int) -> None:
    answers = exchange(port, [form_post(b"a=1") + b"G"])
    assert statuses(answers) == [200, 408]


def test_a_chunk_extension_over_the_bound_is_refused(port: int) -> None:
    """A 4 MB chunk extension was read to its end; it is cut off at max_header_bytes."""
    post = chunked_post(b"a=1", extension=b";" + b"e" * (4 * MAX_HEADER_BYTES))
    answers = exchange(port, [post])
    assert statuses(answers) == [400]
    assert b"malformed" in answers


def test_a_long_complete_header_block_in_one_write_gets_431(port: int) -> None:
    """Each header under max_header_bytes, the block over its bound, all in one write."""
    pad = b"".join(b"X-P%d: %s\r\n" % (n, b"p" * 900) for n in range(5))
    answers = exchange(port, [b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + pad + b"\r\n"])
    assert statuses(answers) == [431]


REQUESTS = st.sampled_from(
    [
        HEALTH,
        form_post(b"a=1&b=2"),
        form_post(b"a=\r\n\r\nGET / HTTP/1.1"),
        chunked_post(b"a=1&b=2&c=3"),
        chunked_post(b"x=\r\n\r\n", extension=b";q=1"),
        b"\r\n" + HEALTH,
    ]
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(REQUESTS, min_size=1, max_size=4),
    st.lists(st.integers(0, 100_000), max_size=6),
    st.integers(1, BLOCK_LIMIT),
)
def test_every_byte_of_an_unfinished_header_block_counts_whatever_the_pieces(
    port: int, stream: list[bytes], cuts: list[int], overflow: int
) -> None:
    """Whole requests, then an unfinished header block one byte to BLOCK_LIMIT bytes over its
    bound, cut anywhere and sent a piece at a time: each request answered, then 431."""
    unfinished = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
    unfinished += b"p" * (BLOCK_LIMIT + overflow - len(unfinished))
    data = b"".join(stream) + unfinished
    points = sorted({cut % len(data) for cut in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    answers = exchange(port, pieces, gap_s=0.002)
    assert statuses(answers) == [200] * len(stream) + [431]


def test_a_parser_refusal_reaches_a_client_still_sending_its_body(port: int) -> None:
    """A header line over max_header_bytes, refused by the parser, with a 200 KB body behind
    it: the connection stopped reading and closed with the body unread, and the reset that
    drew could cost the client the 431 (1 run in 5 of the sandbox's own test)."""
    head = (
        b"POST " + ECHO + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n"
        b"X-Big: " + b"b" * (MAX_HEADER_BYTES + 500) + b"\r\n\r\n"
    )
    answers = exchange(port, [head] + [b"x" * 20_000] * 10, gap_s=0.01, sends_may_fail=False)
    assert statuses(answers) == [431]
