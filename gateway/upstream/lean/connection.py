"""One connection of the lean client: one exchange at a time, the answer parsed as it comes
by httptools (llhttp, as Node.js uses it) and refused as soon as it cannot be relayed.

Its errors are the gateway's own, but for TimeoutError and ConnectionLost (no answer came),
which the lean transport names: it knows the call and the app's TLS setting.
"""

from __future__ import annotations

import asyncio
import math

import httptools
from multidict import CIMultiDict

from gateway.core.errors import UpstreamBadResponse
from gateway.upstream.framing import bad_status, is_chunked, too_large
from gateway.upstream.transport import Answer

# An answer's status line and headers, at most; aiohttp's client allows 8 KiB per line.
MAX_HEAD_BYTES = 64 * 1024


class ConnectionLost(Exception):
    """The connection ended before any of the answer came; its cause, if any, is chained."""

    def __init__(self, message: str, reused: bool) -> None:
        super().__init__(message)
        # It had carried answers before: whatever ended it, its handshake was fine.
        self.reused = reused


NEVER = -math.inf


class Strays:
    """When a pool's connection last received bytes that no call asked for."""

    __slots__ = ("last_s",)

    def __init__(self) -> None:
        self.last_s = NEVER


class Connection(asyncio.Protocol):
    """One connection, one exchange at a time; the parser's callbacks fill the answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tls: bool, strays: Strays) -> None:
        self._loop = loop
        self._tls = tls
        self._strays = strays
        # None once the connection is lost.
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        # Closed or closing: never handed to another call.
        self.lost = False
        self.reusable = False
        # Bytes came that no call asked for: behind an answer, or while it rested.
        self.stray = False
        # When it went back to the pool (the loop's clock).
        self.idle_since = 0.0
        self._answered = False
        self._waiter: asyncio.Future[Answer] | None = None
        self._max_body_bytes = 0
        self._max_seen = 0
        self._reset()

    def _reset(self) -> None:
        self._headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] = []
        self._seen = self._head_bytes = self._body_bytes = self._status = 0
        self._headers_done = self._interim = self._until_close = False

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if self._waiter is None or self._waiter.done() or parser is None:
            self._strayed()
            return
        self._seen += len(data)
        try:
            if self._seen > self._max_seen:
                # Framing (chunk sizes, extensions, trailers) far beyond the body allowed.
                raise UpstreamBadResponse(too_large(self._max_body_bytes))
            parser.feed_data(data)
            if not self._headers_done and self._seen > MAX_HEAD_BYTES:
                # Checked on the bytes as well as on whole lines: a line may never end.
                raise _head_too_large()
        except httptools.HttpParserCallbackError as exc:
            # A callback refused the answer (its size, a 101): that refusal is the error.
            refusal = exc.__context__
            try:
                self._refuse(
                    refusal if isinstance(refusal, UpstreamBadResponse) else _not_http(exc)
                )
            finally:
                # Its traceback holds this frame: a cycle that would keep the connection and
                # the body read so far (up to max_response_bytes) for the collector.
                del refusal
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._refuse(_not_http(exc))
        except UpstreamBadResponse as exc:
            self._refuse(exc)

    def eof_received(self) -> bool:
        # An answer without a length ends when the connection does (RFC 9112 section 6.3).
        if self._waiter is not None and not self._waiter.done() and self._until_close:
            self._complete(reusable=False)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        try:
            self._answer_lost(exc)
        finally:
            # The parser calls back into this connection, and the transport holds it: cycles
            # that would wait for the garbage collector (see gateway/runtime/heap.py). Nothing is
            # read or written once the connection is lost.
            self._parser = None
            self.transport = None

    def _answer_lost(self, exc: Exception | None) -> None:
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done:
            # The answer began and was cut short: what came cannot be relayed.
            self._waiter.set_exception(
                UpstreamBadResponse("the platform's answer ended before its end")
            )
            return
        lost = ConnectionLost(
            "the platform closed the connection without an answer", reused=self._answered
        )
        lost.__cause__ = exc
        self._waiter.set_exception(lost)

    # httptools' side
    def on_message_begin(self) -> None:
        if self._waiter is None or self._waiter.done():
            # A second answer to one request: it belongs to no caller.
            self._strayed()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:
            # A trailer field: never merged into the head (RFC 9110 section 6.5.1).
            return
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _head_too_large()
        self._headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        status = self._feeding().get_status_code()
        if status == 101:
            # Relayed, it would leave the caller waiting on a protocol the gateway does not
            # speak.
            raise UpstreamBadResponse("the platform answered HTTP 101, which cannot be relayed")
        if not 100 <= status <= 599:
            # (llhttp takes any three digits: 099 is 99, which would pass for an interim.)
            raise UpstreamBadResponse(bad_status(status))
        if status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the final one follows.
            self._interim = True
            self._headers = []
            return
        self._status = status
        self._headers_done = True
        length = transfer = None
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == "content-length":
                length = value
            elif lowered == "transfer-encoding":
                transfer = value if transfer is None else f"{transfer}, {value}"
        # (llhttp has checked that a Content-Length is digits.)
        if length is not None and int(length) > self._max_body_bytes:
            raise UpstreamBadResponse(too_large(self._max_body_bytes))
        chunked = transfer is not None and is_chunked(transfer)
        self._until_close = length is None and not chunked and status not in (204, 304)
        if self._until_close and self._tls:
            # A TCP FIN without TLS's close_notify looks the same to asyncio: anyone on the
            # path could cut such an answer short unnoticed.
            raise UpstreamBadResponse(
                "the platform's answer over TLS has no length (Content-Length or chunked), "
                "so a cut connection could not be told from its end"
            )

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body_bytes:
            raise UpstreamBadResponse(too_large(self._max_body_bytes))
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete(reusable=self._feeding().should_keep_alive())

    def _feeding(self) -> httptools.HttpResponseParser:
        """The parser calling back: there until the connection is lost, when feeding stops."""
        parser = self._parser
        if parser is None:
            raise RuntimeError("httptools called back after the connection was lost")
        return parser

    # the exchange
    def _complete(self, reusable: bool) -> None:
        if self._waiter is None or self._waiter.done():
            return
        self.reusable = reusable
        self._answered = True
        headers = CIMultiDict(self._headers)
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._waiter.set_result(Answer(self._status, headers, body))

    def _fail(self, error: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        self.close()

    def _refuse(self, error: Exception) -> None:
        """The parser refused what came: the answer's own bytes, or bytes behind it."""
        if self._waiter is not None and self._waiter.done():
            # The answer had ended (a 204 or 304 with a body, a body past its length).
            self._strayed()
        self._fail(error)

    def _strayed(self) -> None:
        # Whatever follows on this connection could be read as the next call's answer.
        self.stray = True
        self._strays.last_s = self._loop.time()
        self.close()

    async def exchange(self, request: bytes, max_body_bytes: int, deadline: float) -> Answer:
        """Sends the request and waits for the whole answer (its body at most max_body_bytes)
        until the loop's clock reads `deadline`, then raises TimeoutError."""
        transport = self.transport
        if transport is None:
            # (The pool hands out only connections it has not seen lost.)
            raise ConnectionLost(
                "the connection closed before the request was sent", reused=self._answered
            )
        loop = self._loop
        # It carried answers before: one of them may have been a stray that came just as
        # this request went, and this answer the one before it.
        reused = self._answered
        self._waiter = loop.create_future()
        # A timer, not asyncio.timeout(): a fifth of the cost, on every call.
        timer = loop.call_at(deadline, self._fail, TimeoutError())
        self._reset()
        self.reusable = False
        self._max_body_bytes = max_body_bytes
        # Room for chunked framing around the largest body allowed (4-byte chunks or more).
        self._max_seen = 4 * max_body_bytes + 2 * MAX_HEAD_BYTES
        transport.write(request)
        try:
            answer = await self._waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.stray and reused:
            # More came behind this answer before it was taken: on a fresh connection the
            # first answer is the request's own, on a reused one it may not be.
            raise UpstreamBadResponse(
                "the platform sent more than its answer on a reused connection, so which "
                "answer is this request's cannot be told"
            )
        return answer

    def close(self) -> None:
        self.reusable = False
        self.lost = True
        if self.transport is not None:
            self.transport.close()


def _head_too_large() -> UpstreamBadResponse:
    return UpstreamBadResponse(
        f"the platform's answer has more than {MAX_HEAD_BYTES} bytes of headers"
    )


def _not_http(exc: Exception) -> UpstreamBadResponse:
    return UpstreamBadResponse(f"the platform's answer is not valid HTTP ({exc})")
