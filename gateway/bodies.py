"""Reading what a caller (or the platform) sends: bounded in bytes and in idle time, never inflated.

Every read of a request body in the gateway goes through here, so each listener keeps the
same promises: a compressed body is refused before a byte of it is read, a body larger than
its limit is refused as soon as it is, and a client that stops sending for
`limits.body_idle_timeout_s` gets 408 instead of holding the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from aiohttp import web

from gateway.errors import BadRequest, BodyTimeout, BodyTooLarge, UnsupportedContentEncoding

T = TypeVar("T")
READ_CHUNK_BYTES = 1 << 16
IDENTITY = frozenset({"", "identity"})


def refuse_compressed(headers: Mapping[str, str]) -> None:
    """415 for a Content-Encoding: inflating it is work the caller chooses the size of."""
    if headers.get("Content-Encoding", "").strip().lower() not in IDENTITY:
        raise UnsupportedContentEncoding()


def refuse_declared_size(request: web.BaseRequest, max_bytes: int, limit_name: str) -> None:
    """413 before reading, when Content-Length already says the body is too large."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(limit_name, max_bytes)


def too_large(limit_name: str, max_bytes: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"the request body is larger than the gateway accepts ({limit_name}, {max_bytes} bytes)"
    )


async def within_idle(step: Awaitable[T], idle_s: float) -> T:
    """One read step of a body: 408 if it makes no progress for idle_s, 400 if it is broken."""
    try:
        async with asyncio.timeout(idle_s):
            return await step
    except TimeoutError:
        raise BodyTimeout() from None
    except web.RequestPayloadError as exc:
        # A broken chunked encoding or a body shorter than its Content-Length.
        raise BadRequest(f"the request body is malformed ({_kind(exc)})") from None


def _kind(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return type(cause).__name__ if cause is not None else type(exc).__name__


async def read_capped(
    request: web.BaseRequest, max_bytes: int, idle_s: float, limit_name: str
) -> bytes:
    """The whole body, or BodyTooLarge as soon as it passes max_bytes."""
    refuse_declared_size(request, max_bytes, limit_name)
    body = bytearray()
    content = request.content
    while True:
        chunk = await within_idle(content.read(READ_CHUNK_BYTES), idle_s)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > max_bytes:
            raise too_large(limit_name, max_bytes)
