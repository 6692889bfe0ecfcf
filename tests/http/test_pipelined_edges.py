"""The guarded listener at the edges of pipelining: a burst past aiohttp's queue bound, requests
behind a declined upgrade, and a body the parser refuses mid-way."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web_protocol

from gateway.http.connections import GuardedRequestHandler
from tests.conftest import GatewayFactory
from tests.support.platform_double import PlatformDouble
from tests.support.rawhttp import statuses, until_closed

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_a_pipelined_burst_queues_no_more_requests_than_aiohttps_bound(
    make_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp parses at most MAX_MSG_QUEUE_SIZE pipelined requests ahead of the one being
    answered, and keeps the rest as bytes. Fed one header block at a time, the parser emits
    one more request per block past that bound: a single 256 KiB read of tiny requests was
    held as ~7,500 parsed requests (about 10x its size in memory, ~50 ms in one callback)."""
    queued: list[int] = []
    received = GuardedRequestHandler.data_received

    def recording(self: GuardedRequestHandler, data: bytes) -> None:
        received(self, data)
        queued.append(len(self._messages))

    monkeypatch.setattr(GuardedRequestHandler, "data_received", recording)
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
