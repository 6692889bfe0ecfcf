"""A hostile client against the listener's framing: where the bytes the parser is fed, the
refusals it answers and the time it gives a header block go wrong."""

from __future__ import annotations

import asyncio

import pytest

from tests.abuse.conftest import HEADER_TIMEOUT_S, Target, request_bytes
from tests.support.paths import SANDBOX_ECHO as ECHO
from tests.support.rawhttp import statuses, until_closed

# The module's tests share a gateway, on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
HEALTH = request_bytes("GET", "/healthz")
# What a closed connection may take beyond its timeout: the timer, and this test's own reading.
SLACK_S = 2.0


def chunked_post(body: bytes, chunk: int) -> bytes:
    chunks = b"".join(
        b"%x\r\n" % len(body[at : at + chunk]) + body[at : at + chunk] + b"\r\n"
        for at in range(0, len(body), chunk)
    )
    head = request_bytes("POST", ECHO, headers={**FORM, "Transfer-Encoding": "chunked"})
    return head + chunks + b"0\r\n\r\n"


@pytest.mark.parametrize("fields", [14, 16])
async def test_a_large_chunked_body_with_requests_pipelined_behind_it_is_read_whole(
    target: Target, fields: int
) -> None:
    """A valid chunked form of 840 KB, then two GETs, all in one write: the POST got 408 "the
    request body stalled" and the GETs nothing. (Its body pauses the parser, which keeps the
    rest of the chunks; the listener holds the GETs that came after, and feeds the parser
    nothing more while it holds bytes, so the parser never resumes.)"""
    body = b"&".join(b"k%d=%s" % (n, b"v" * 60_000) for n in range(fields))
    answers = await until_closed(
        target.port, chunked_post(body, 4000) + HEALTH + HEALTH + b"BAD\r\n\r\n"
    )
    assert statuses(answers) == [200, 200, 200, 400]


async def test_an_http2_preface_alone_is_answered_within_the_header_timeout(
    target: Target,
) -> None:
    """`PRI * HTTP/2.0` and its blank line, then nothing (a client waiting for the server's
    preface): no answer, and the connection held until the keep-alive timeout (75 s). The
    header timer is cancelled at the block's end, and the parser made no request of it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
    try:
        writer.write(b"PRI * HTTP/2.0\r\n\r\n")
        async with asyncio.timeout(HEADER_TIMEOUT_S + SLACK_S):
            answer = await reader.read(-1)
    finally:
        writer.close()
    assert statuses(answer) in ([505], [408])


REFUSED_BY_THE_PARSER = {
    "bad request line": b"BAD LINE\r\n\r\n",
    "bad header name": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n",
    # One line over max_header_bytes (16 KB by default), the block under its own bound.
    "long header line": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 17_000 + b"\r\n\r\n",
    "HTTP/0.9": b"GET /healthz\r\n\r\n",
    "bad chunk size": chunked_post(b"a=1", 7).replace(b"3\r\na=1", b"3 x\r\na=1"),
}


@pytest.mark.parametrize("refused", REFUSED_BY_THE_PARSER.values(), ids=REFUSED_BY_THE_PARSER)
async def test_a_client_that_sends_more_after_a_refusal_still_reads_it(
    target: Target, refused: bytes
) -> None:
    """The listener's own refusals (431 by its count, 408, 503) linger, reading and dropping
    what still comes; the parser's do not: the connection closes at once after the answer,
    and bytes the client sends on draw a reset that loses the answer (2 to 4 of 5 clients)."""
    lost = 0
    for _ in range(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        try:
            writer.write(refused)
            async with asyncio.timeout(10):
                first = await reader.readexactly(1)
                try:
                    writer.write(HEALTH)
                    await writer.drain()
                    rest = await reader.read(-1)
                except ConnectionError:
                    lost += 1
                    continue
        finally:
            writer.close()
        assert len(statuses(first + rest)) == 1
    assert lost == 0, f"{lost} of 10 clients lost the answer to a reset"


async def test_a_malformed_chunked_body_is_no_unhandled_error(target: Target) -> None:
    """A bad chunk size (or a chunk line over its bound) is answered 400, then aiohttp's
    lingering read of the rest of the body raises the body's error again, logged as
    "Unhandled exception" with a traceback at ERROR for every such request."""
    bad_size = chunked_post(b"a=1", 7).replace(b"3\r\na=1", b"3 x\r\na=1")
    long_line = chunked_post(b"a=1", 7).replace(b"3\r\n", b"3;" + b"e" * 17_000 + b"\r\n")
    for refused in (bad_size, long_line):
        assert statuses(await until_closed(target.port, refused)) == [400]
    # Logged after the two above, which log before their connections close.
    assert statuses(await until_closed(target.port, HEALTH + b"BAD\r\n\r\n")) == [200, 400]
    await target.process.wait_for_log("refused a malformed request", since=target.mark)
    assert "Unhandled exception" not in target.process.log_since(target.mark)
    assert "Traceback" not in target.process.log_since(target.mark)
