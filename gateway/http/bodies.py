"""Reading what a caller (or the platform) sends: bounded in bytes, idle time and pace, never
inflated.

Every read of a request body in the gateway goes through here, so each listener keeps the
same promises: a compressed body is refused before a byte of it is read, a body larger than
its limit is refused as soon as it is, a client that stops sending for
`limits.body_idle_timeout_s` gets 408 instead of holding the connection, and so does one that
sends too slowly (`limits.min_body_rate_bytes_per_s`, after `limits.body_rate_grace_s`).

Why a minimum rate and not a total deadline: a deadline long enough for the largest upload a
slow but honest link can carry (100 MB at 1 Mbit/s is 800 s) lets a client that sends a byte
a second hold the connection for as long. A rate makes every second a client holds a
connection cost it bytes, whatever the body's size: a dribble is cut off after the grace
period, an upload at any real link's speed is never cut, and a fast start followed by a
dribble buys only the time its bytes pay for. As in Kestrel's MinRequestBodyDataRate, only the
time the gateway spends waiting for the client counts, not the time it spends on the bytes it
has (spooling a file, say), so a busy gateway does not punish its clients.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import HttpVersion11, hdrs, web
from multidict import CIMultiDictProxy

from gateway.config.schema import LimitsConfig
from gateway.core.errors import (
    BadRequest,
    BodyTimeout,
    BodyTooLarge,
    ExpectationFailed,
    UnsupportedContentEncoding,
)
from gateway.core.sizes import READ_CHUNK_BYTES, gather_capped
from gateway.http.connections import waiting_on_client, was_evicted

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


@dataclass(frozen=True)
class BodyTimes:
    """How long a client may take over a body: `idle_s` for each read, and once the gateway
    has waited `grace_s` on the body, `min_rate` bytes for every second it has waited
    (0: no minimum)."""

    idle_s: float
    min_rate: int = 0
    grace_s: float = 0.0

    @classmethod
    def of(cls, limits: LimitsConfig) -> BodyTimes:
        return cls(
            limits.body_idle_timeout_s, limits.min_body_rate_bytes_per_s, limits.body_rate_grace_s
        )

    def allowed_wait_s(self, received: int) -> float:
        """How long the gateway may have waited on a body of which `received` bytes have
        arrived: the grace period, or longer by as much as those bytes pay for."""
        if not self.min_rate:
            return math.inf
        return max(self.grace_s, received / self.min_rate)


class BodyClock:
    """Times one request's body, read by read (`BodyTimes.idle_s`) and as a whole (its pace).

    The pace is checked by a timer set for when the bytes received so far stop paying for
    the wait; when it fires, bytes that arrived meanwhile move it on, so a client keeping up
    is never cut off in the middle of a read that takes several pieces (a part's headers).
    """

    def __init__(self, request: web.BaseRequest, times: BodyTimes) -> None:
        self._request = request
        self.times = times
        self._waited_s = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.too_slow = False

    async def step(self, step: Awaitable[T]) -> T:
        """One read step of a body: 408 if it makes no progress for idle_s, if the body falls
        below its pace, or if the listener is full and this client is the slowest; 400 if it
        is broken."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.times.idle_s) as deadline:
                with waiting_on_client(self._request, deadline):
                    began = loop.time()
                    self._set_timer(loop, deadline, began)
                    try:
                        return await step
                    finally:
                        if self._timer is not None:
                            self._timer.cancel()
                            self._timer = None
                        self._waited_s += loop.time() - began
        except TimeoutError:
            if was_evicted(self._request):
                raise BodyTimeout(
                    "the gateway was at limits.max_connections and this request's body was "
                    "the slowest to arrive; the connection is closed"
                ) from None
            if self.too_slow:
                raise BodyTimeout(
                    "the request body arrived too slowly: below "
                    f"limits.min_body_rate_bytes_per_s ({self.times.min_rate} bytes a second) "
                    f"after limits.body_rate_grace_s ({self.times.grace_s:g} s); "
                    "the connection is closed"
                ) from None
            raise BodyTimeout() from None
        except web.RequestPayloadError as exc:
            # A broken chunked encoding or a body shorter than its Content-Length.
            raise BadRequest(f"the request body is malformed ({_kind(exc)})") from None
        except ConnectionError:
            # The client went away mid-body; the answer goes nowhere, but is logged as a 400.
            raise BadRequest("the connection closed before the whole body arrived") from None

    def _set_timer(
        self, loop: asyncio.AbstractEventLoop, deadline: asyncio.Timeout, began: float
    ) -> None:
        allowed = self.times.allowed_wait_s(self._request.content.total_bytes)
        if math.isinf(allowed):
            return
        # When the wait so far, this step's included, reaches what the bytes pay for.
        due = began + allowed - self._waited_s
        self._timer = loop.call_at(due, self._check, loop, deadline, began)

    def _check(
        self, loop: asyncio.AbstractEventLoop, deadline: asyncio.Timeout, began: float
    ) -> None:
        self._timer = None
        if deadline.expired():
            return
        waited = self._waited_s + loop.time() - began
        if waited < self.times.allowed_wait_s(self._request.content.total_bytes):
            # Bytes arrived while this step waited for more: they pay for more waiting.
            self._set_timer(loop, deadline, began)
            return
        self.too_slow = True
        deadline.reschedule(loop.time())


def _kind(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return type(cause).__name__ if cause is not None else type(exc).__name__


async def read_capped(
    request: web.BaseRequest, max_bytes: int, limits: LimitsConfig, limit_name: str
) -> bytes:
    """The whole body, or BodyTooLarge as soon as it passes max_bytes. (The limits, not the
    BodyTimes made of them: most bodies arrive with their headers, and need no clock.)"""
    refuse_declared_size(request, max_bytes, limit_name)
    content = request.content
    if request.content_length is not None and content.is_eof() and content.exception() is None:
        # All of it arrived with the headers (a small form, most often): no waiting to bound.
        body = content.read_nowait(-1)
        if len(body) != request.content_length:
            raise BadRequest("the request body is malformed (shorter than its Content-Length)")
        return body
    return await gather_capped(
        _chunks(request, BodyClock(request, BodyTimes.of(limits))),
        max_bytes,
        lambda: too_large(limit_name, max_bytes),
    )


async def _chunks(request: web.BaseRequest, clock: BodyClock) -> AsyncIterator[bytes]:
    while chunk := await clock.step(request.content.read(READ_CHUNK_BYTES)):
        yield chunk
