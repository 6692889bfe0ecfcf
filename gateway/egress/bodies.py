"""Reading what a caller (or the platform) sends: bounded in bytes and in idle time, never inflated.

Every read of a request body in the gateway goes through here, so each listener keeps the
same promises: a compressed body is refused before a byte of it is read, a body larger than
its limit is refused as soon as it is, and a client that stops sending for
`limits.body_idle_timeout_s` gets 408 instead of holding the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from aiohttp import HttpVersion11, hdrs, web
from multidict import CIMultiDictProxy

from gateway.core.errors import (
    BadRequest,
    BodyTimeout,
    BodyTooLarge,
    ExpectationFailed,
    UnsupportedContentEncoding,
)
from gateway.core.sizes import READ_CHUNK_BYTES, gather_capped
from gateway.web.connections import waiting_on_client, was_evicted

T = TypeVar("T")
IDENTITY = frozenset({"", "identity"})


def refuse_compressed(headers: CIMultiDictProxy[str]) -> None:
    """415 for a compressed body: inflating it is work the caller chooses the size of.

    Every Content-Encoding header counts (a second one may follow an `identity`), and any
    transfer coding but chunked.
    """
    encodings = codings(headers.getall(hdrs.CONTENT_ENCODING, []))
    if not encodings <= IDENTITY:
        raise UnsupportedContentEncoding()
    if not codings(headers.getall(hdrs.TRANSFER_ENCODING, [])) <= {"chunked"}:
        raise UnsupportedContentEncoding(
            "transfer codings other than chunked are not accepted: send the body uncompressed"
        )


def codings(values: list[str]) -> set[str]:
    """The codings named in these header values, lower case (`gzip, chunked` is two)."""
    return {token.strip().lower() for value in values for token in value.split(",")}


async def send_continue(request: web.BaseRequest) -> None:
    """`100 Continue` to an HTTP/1.1 client that waits for it before sending its body; any
    other expectation is one the gateway cannot meet (417), as aiohttp's own handler says."""
    if request.version != HttpVersion11:
        return
    expect = request.headers.get(hdrs.EXPECT, "")
    if expect.lower() != "100-continue":
        raise ExpectationFailed()
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0


def refuse_declared_size(request: web.BaseRequest, max_bytes: int, limit_name: str) -> None:
    """413 before reading, when Content-Length already says the body is too large."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(limit_name, max_bytes)


def too_large(limit_name: str, max_bytes: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"the request body is larger than the gateway accepts ({limit_name}, {max_bytes} bytes)"
    )


async def within_idle(step: Awaitable[T], idle_s: float, request: web.BaseRequest) -> T:
    """One read step of a body: 408 if it makes no progress for idle_s (or the listener is
    full and this client is the slowest), 400 if it is broken."""
    try:
        async with asyncio.timeout(idle_s) as deadline:
            with waiting_on_client(request, deadline):
                return await step
    except TimeoutError:
        if was_evicted(request):
            raise BodyTimeout(
                "the gateway was at limits.max_connections and this request's body was the "
                "slowest to arrive; the connection is closed"
            ) from None
        raise BodyTimeout() from None
    except web.RequestPayloadError as exc:
        # A broken chunked encoding or a body shorter than its Content-Length.
        raise BadRequest(f"the request body is malformed ({_kind(exc)})") from None
    except ConnectionError:
        # The client went away mid-body; the answer goes nowhere, but is logged as a 400.
        raise BadRequest("the connection closed before the whole body arrived") from None


def _kind(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return type(cause).__name__ if cause is not None else type(exc).__name__


async def read_capped(
    request: web.BaseRequest, max_bytes: int, idle_s: float, limit_name: str
) -> bytes:
    """The whole body, or BodyTooLarge as soon as it passes max_bytes."""
    refuse_declared_size(request, max_bytes, limit_name)
    content = request.content
    if request.content_length is not None and content.is_eof() and content.exception() is None:
        # All of it arrived with the headers (a small form, most often): no waiting to bound.
        body = content.read_nowait(-1)
        if len(body) != request.content_length:
            raise BadRequest("the request body is malformed (shorter than its Content-Length)")
        return body
    return await gather_capped(
        _chunks(request, idle_s), max_bytes, lambda: too_large(limit_name, max_bytes)
    )


async def _chunks(request: web.BaseRequest, idle_s: float) -> AsyncIterator[bytes]:
    while chunk := await within_idle(request.content.read(READ_CHUNK_BYTES), idle_s, request):
        yield chunk
