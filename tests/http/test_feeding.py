"""The parser fed one request part at a time: requests pipelined ahead of a bad one answered, in
order, before its refusal; the queue of parsed requests bounded; what follows a declined
upgrade parsed once it is answered; a body the parser breaks off failing at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web_protocol

from gateway.http.feeding import FramedRequestHandler
from tests.conftest import GatewayFactory
from tests.http.conftest import HEALTH, MAX_HEADER_BYTES, chunked_post, exchange, form_post
from tests.support.paths import ECHO
from tests.support.platform_double import PlatformDouble
from tests.support.rawhttp import statuses, until_closed

ECHO_Q = ECHO.encode() + b"?a=1"
OK = HEALTH


def last_envelope(answer: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(answer[answer.rindex(b"\r\n\r\n") + 4 :])
    return document


@pytest.mark.parametrize(
    "post",
    [
        pytest.param(form_post(b"a=1&b=2"), id="content-length body"),
        pytest.param(chunked_post(b"a=1&b=2&c=3456789"), id="chunked body"),
    ],
)
def test_pipelined_requests_are_answered_up_to_a_bad_one_then_400_and_close(
    listener_port: int, post: bytes
) -> None:
    """A POST with its body, two GETs and a bad line in one write: the POST got 400 "the
    request body is malformed", the GETs no answer, the connection no close."""
    answers = exchange(listener_port, [post + HEALTH + HEALTH + b"BAD LINE\r\n\r\n"])
    assert statuses(answers) == [200, 200, 200, 400]
    assert b'"error": "bad_request"' in answers.split(b" 400 ")[1]


def test_a_request_with_one_stray_byte_behind_it_is_answered(listener_port: int) -> None:
    """Headers, body and one stray byte in one write: the POST got no answer at all."""
    answers = exchange(listener_port, [form_post(b"a=1") + b"\x01"])
    assert statuses(answers) == [200, 400]


def test_a_chunk_extension_over_the_bound_is_refused(listener_port: int) -> None:
    """A 4 MB chunk extension was read to its end; it is cut off at max_header_bytes."""
    post = chunked_post(b"a=1", extension=b";" + b"e" * (4 * MAX_HEADER_BYTES))
    answers = exchange(listener_port, [post])
    assert statuses(answers) == [400]
    assert b"malformed" in answers


async def test_a_pipelined_burst_queues_no_more_requests_than_aiohttps_bound(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp parses at most MAX_MSG_QUEUE_SIZE pipelined requests ahead of the one being
    answered, and keeps the rest as bytes. Fed one header block at a time, the parser emits
    one more request per block past that bound: a single 256 KiB read of tiny requests was
    held as ~7,500 parsed requests (about 10x its size in memory, ~50 ms in one callback)."""
    queued: list[int] = []
    received = FramedRequestHandler.data_received

    def recording(self: FramedRequestHandler, data: bytes) -> None:
        received(self, data)
        queued.append(len(self.queued))

    monkeypatch.setattr(FramedRequestHandler, "data_received", recording)
    gateway = await make_gateway()
    count = 4000
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(HEALTH * count)
        await writer.drain()
        answers = b""
        async with asyncio.timeout(20):
            while answers.count(b"HTTP/1.1 200 ") < count:
                chunk = await reader.read(1 << 16)
                assert chunk, "the connection closed before every request was answered"
                answers += chunk
    finally:
        writer.close()
    assert statuses(answers) == [200] * count
    assert max(queued) <= web_protocol.MAX_MSG_QUEUE_SIZE + 1


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9"])
async def test_another_version_behind_a_declined_upgrade_is_505_and_never_forwarded(
    make_gateway: GatewayFactory, platform: PlatformDouble, version: bytes
) -> None:
    """aiohttp parses what follows a request asking to upgrade to a websocket itself (in
    finish_response, from its message tail), not through data_received: a request line in
    another version there was forwarded and answered `HTTP/2.0 200 OK`."""
    gateway = await make_gateway()
    upgrade = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    other = b"GET /neuopenapi/test/echo?a=2 " + version + b"\r\nHost: x\r\n\r\n"
    answer = await until_closed(gateway.port, upgrade + other)
    assert statuses(answer) == [200, 505]
    assert platform.received == []


async def test_a_body_behind_a_declined_upgrade_is_not_counted_as_headers(
    make_gateway: GatewayFactory, platform: PlatformDouble
) -> None:
    """A request parsed from a declined upgrade's tail was not known to have a body: the
    body's bytes were counted as a header block, and past limits.max_header_bytes the
    connection was dropped mid-request without an answer."""
    gateway = await make_gateway()
    assert gateway.port is not None
    upgrade = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    body = b"a=" + b"x" * 40_000
    post = (
        b"POST /neuopenapi/test/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(upgrade + post + body[:10])
        await writer.drain()
        async with asyncio.timeout(10):
            # The upgrade request answered: the POST behind it was parsed from its tail, and
            # the rest of its body arrives in a read of its own.
            answer = await reader.readuntil(b"\r\n\r\n")
            writer.write(body[10:])
            await writer.drain()
            answer += await reader.read(-1)
    finally:
        writer.close()
    assert statuses(answer) == [200, 200]
    assert len(platform.received) == 1


async def test_a_broken_chunked_body_is_answered_400_promptly(
    make_gateway: GatewayFactory, platform: PlatformDouble
) -> None:
    """llhttp refuses a bad chunk size by raising from feed_data, with no error on the body it
    was filling: the body's read fails at once, answered 400 (not 408 once
    limits.body_idle_timeout_s has passed), and the parser's own refusal is not a second
    answer to the same request."""
    gateway = await make_gateway()
    assert gateway.port is not None
    post = (
        b"POST /neuopenapi/test/echo HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\na=1\r\nZZ\r\nxx\r\n0\r\n\r\n"
    )
    # (Within 5 s: the answer and the close after it; body_idle_timeout_s is 30.)
    answer = await until_closed(gateway.port, post, timeout_s=5)
    assert statuses(answer) == [400]
    assert b'"error": "bad_request"' in answer
    assert platform.received == []


async def test_requests_pipelined_ahead_of_another_version_are_answered_first(
    make_gateway: GatewayFactory, platform: PlatformDouble
) -> None:
    gateway = await make_gateway()
    other = b"GET " + ECHO_Q + b" HTTP/2.0\r\nHost: x\r\n\r\n"
    # The connection closes after the 505: the request behind it is not read.
    answer = await until_closed(gateway.port, OK + OK + other + OK)
    assert statuses(answer) == [200, 200, 505]
    assert platform.received == []


async def test_requests_pipelined_ahead_of_a_malformed_one_are_answered_first(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    answer = await until_closed(gateway.port, OK + b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n" + OK)
    assert statuses(answer) == [200, 400]
    assert last_envelope(answer)["error"] == "bad_request"


async def test_a_request_body_holding_blank_lines_is_not_taken_for_requests(
    make_gateway: GatewayFactory, platform: PlatformDouble
) -> None:
    gateway = await make_gateway()
    body = b"a=1&b=\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"
    post = (
        b"POST " + ECHO_Q + b" HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    answer = await until_closed(
        gateway.port, post + OK + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert statuses(answer) == [200, 200, 200]
    assert platform.last.params["b"] == "\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"


async def test_pipelined_http_1_0_requests_end_with_the_first(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    answer = await until_closed(gateway.port, b"GET /healthz HTTP/1.0\r\n\r\n" * 2)
    assert statuses(answer) == [200]
