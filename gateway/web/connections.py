"""How a listener takes connections: bounded header bytes and time, and a connection cap.

aiohttp buffers a request's header block until it is complete, waits for it as long as the
client likes, and takes any number of connections. Each listener of the gateway (the callers'
one and the platform-facing callbacks one) runs behind this module's runner instead, whose
connections:

- count the bytes of each header block as they arrive and answer 431 once they pass what
  `limits.max_header_bytes` allows, so a client cannot make the gateway hold more;
- answer 408 when a header block is not complete within `limits.header_timeout_s` of its
  first byte (or of the connection opening), and close;
- at `limits.max_connections` open at once, make room for a new one by closing the one that
  has waited longest on its client (idle, or sending headers or a body), and refuse it with
  503 only when all are busy with requests;
- answer what aiohttp's parser refuses (a malformed request line, an oversized header) in
  the platform's envelope, not in aiohttp's plain text.

The body's own idle timeout is kept by the handlers that read it (`bodies`), which mark
their waits with `waiting_on_client`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.http_writer import HttpVersion10, HttpVersion11
from aiohttp.web_protocol import RequestHandler, _ErrInfo
from aiohttp.web_request import BaseRequest

from gateway import logs
from gateway.core.errors import (
    BadRequest,
    GatewayError,
    HeadersTooLarge,
    HeaderTimeout,
    InternalError,
    TooManyConnections,
    UpstreamTimeout,
    VersionNotSupported,
    render,
)
from gateway.metrics import NONE, OTHER
from gateway.web.dispatch import ServerHandler, dispatcher
from gateway.web.middlewares import error_response

log = logs.logger("neu_gateway.listener")

# Room for the request line beside the headers; both are bounded by max_header_bytes on
# their own (aiohttp's line and field limits), this bounds what is held while they arrive.
REQUEST_LINE_ALLOWANCE = 1024
HTTP_1 = (HttpVersion11, HttpVersion10)
HEADER_END = b"\r\n\r\n"
# aiohttp's default; with each field bounded, the block is bounded by the byte count anyway.
MAX_HEADER_FIELDS = 128
# What a connection waits on its client for, as the log names it.
IDLE, HEADERS, BODY, ANSWER = "idle", "sending headers", "sending a body", "reading its answer"
LINGER_S = 2.0


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection to a listener may hold and how long it may take to ask."""

    max_header_bytes: int
    header_timeout_s: float
    keepalive_timeout_s: float
    max_connections: int
    # How long a client may leave its answer unread (writing stalled) before it is dropped.
    send_idle_timeout_s: float = 30.0

    @property
    def max_header_block_bytes(self) -> int:
        """Request line plus headers; each is checked on its own by the parser as well."""
        return 2 * self.max_header_bytes + REQUEST_LINE_ALLOWANCE

    def handler_args(self) -> dict[str, Any]:
        """aiohttp's parser limits, for `web.Application(handler_args=...)`.

        Request bodies are never inflated: `bodies` refuses a Content-Encoding instead, since
        a few KB of gzip can inflate to gigabytes before any limit is looked at.
        """
        return {
            "max_line_size": self.max_header_bytes,
            "max_field_size": self.max_header_bytes,
            "max_headers": MAX_HEADER_FIELDS,
            "auto_decompress": False,
            # After an early refusal the rest of a body is read and dropped for this long, so
            # the client can read the answer before the connection closes; not aiohttp's 10 s.
            "lingering_time": LINGER_S,
        }


@contextmanager
def waiting_on_client(request: web.BaseRequest, deadline: asyncio.Timeout) -> Iterator[None]:
    """Marks a body read as waiting on the client, so a full listener may cut it short."""
    protocol = request.protocol
    if not isinstance(protocol, GuardedRequestHandler):
        yield
        return
    protocol.client_wait_began(deadline)
    try:
        yield
    finally:
        protocol.client_wait_ended()


def was_evicted(request: web.BaseRequest) -> bool:
    """Whether the request's body read was cut short to make room for a new connection."""
    return getattr(request.protocol, "evicted", False) is True


def _log_refused(request_id: str, error: GatewayError) -> None:
    """The access line of a request refused before it reached a handler: only its answer is
    known."""
    logs.access(
        logs.AccessLine(
            request_id=request_id,
            caller=NONE,
            app=NONE,
            method=NONE,
            route=OTHER,
            status=error.status,
            path="-",
            upstream_status=NONE,
            platform_status=NONE,
            duration_ms=0.0,
            upstream_ms=0.0,
            bytes_in=0,
            bytes_out=len(render(error)),
        )
    )


def error_bytes(error: GatewayError, request_id: str) -> bytes:
    """A whole HTTP/1.1 answer carrying the error, for when no aiohttp response can be sent."""
    body = render(error)
    reason = HTTPStatus(error.status).phrase
    head = (
        f"HTTP/1.1 {error.status} {reason}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        f"X-Request-Id: {request_id}\r\n\r\n"
    )
    return head.encode() + body


def error_for_parser(status: int, exc: BaseException | None) -> GatewayError:
    """The gateway's own error for what aiohttp refused before any handler ran."""
    if status == 505 or _names_another_version(exc):
        return VersionNotSupported()
    if isinstance(exc, LineTooLong) or (
        isinstance(exc, BadHttpMessage) and "too many headers" in str(exc).lower()
    ):
        return HeadersTooLarge(
            "the request line or a header is longer, or there are more headers, than the "
            "gateway accepts (limits.max_header_bytes)"
        )
    if isinstance(exc, HttpProcessingError) or status == 400:
        # aiohttp's message can quote the request's bytes; name only the kind of problem.
        kind = type(exc).__name__ if exc is not None else "BadHttpMessage"
        return BadRequest(f"the request is not valid HTTP/1.1 ({kind})")
    if status == 504:
        return UpstreamTimeout()
    return InternalError()


def _names_another_version(exc: BaseException | None) -> bool:
    """Whether the parser refused a request line for its version (HTTP/3.0, HTTP/1.2) or as
    HTTP/2's connection preface (PRI * HTTP/2.0)."""
    if not isinstance(exc, BadHttpMessage):
        return False
    text = str(exc)
    return "Invalid HTTP version" in text or "Pause on PRI" in text


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, with the header block bounded in bytes and time."""

    def __init__(self, manager: GuardedServer, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        kwargs["keepalive_timeout"] = limits.keepalive_timeout_s
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._server = manager
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        # The body of the request whose headers came last: while it is still arriving,
        # the bytes belong to it, not to a header block.
        self._body: Any = None
        self._message: RawRequestMessage | None = None
        self._counted = False
        # When the connection went idle (opened, or answered its last request), when its
        # current header block began, and the body read it is waiting on the client for.
        self._idle_since = 0.0
        self._headers_since = 0.0
        self._body_since: float | None = None
        self._client_wait: asyncio.Timeout | None = None
        # Since when the client has left its answer unread (the transport's buffer is full).
        self._send_stalled_since: float | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        # Orders connections accepted in the same loop iteration, whose times are equal.
        self.serial = 0
        self.evicted = False
        # The parser refused a request: nothing after it is read.
        self._parse_refused = False
        # Pipelined bytes waiting for aiohttp's queue of parsed requests to drain.
        self._held = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._idle_since = self._loop.time()
        self._counted = True
        if not self._server.opened(self):
            log.warning(
                "refused a connection: %d open, none waiting on its client, and "
                "limits.max_connections is %d",
                self._server.open_connections - 1,
                self._limits.max_connections,
            )
            self._refuse(TooManyConnections())
            return
        # A connection that never sends a whole request is closed like a slow one.
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        if self._counted:
            self._counted = False
            self._server.closed(self)
        super().connection_lost(exc)
        # The last request's body and head: the body refers back to this handler, and the
        # pair would otherwise wait for the garbage collector (see gateway/heap.py).
        self._body = self._message = None
        self._held = b""

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        requests_before = self._request_count
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._idle_since = self._loop.time()
            self._body_since = None
            if self._request_count != requests_before:
                # A declined upgrade (`Upgrade: websocket`): aiohttp parsed the bytes that
                # followed it itself, not through data_received.
                self._screen(self._request_count - requests_before)

    def client_wait_began(self, deadline: asyncio.Timeout) -> None:
        """A handler waits for body bytes: until they come, the connection may be evicted.

        Dated from this wait, not the body's start: a body that keeps arriving is not slow.
        """
        self._client_wait = deadline
        self._body_since = self._loop.time()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._send_stalled_since = self._loop.time()
        self._send_timer = self._loop.call_later(
            self._limits.send_idle_timeout_s, self._send_time_up
        )

    def resume_writing(self) -> None:
        super().resume_writing()
        self._send_stalled_since = None
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_time_up(self) -> None:
        self._send_timer = None
        if self._send_stalled_since is not None and self.transport is not None:
            log.info(
                "dropped a connection from %s: its answer went unread for %ss",
                self._peer(),
                self._limits.send_idle_timeout_s,
            )
            self._drop()

    def _drop(self) -> None:
        """Closes at once, unsent bytes and all: the client is not reading them."""
        transport = self.transport
        self.force_close()
        if transport is not None:
            transport.abort()

    def client_wait_ended(self) -> None:
        self._client_wait = None

    def waiting_on_client_since(self) -> tuple[float, int, str] | None:
        """Since when this connection has been waiting on its client, in what state, and its
        serial (connections accepted in the same loop iteration have equal times); None while
        a request is being worked on (it waits on the platform, not the client)."""
        if self._force_close or self.transport is None:
            return None
        if self._send_stalled_since is not None:
            return (self._send_stalled_since, self.serial, ANSWER)
        if self._request_in_progress:
            if self._client_wait is not None and self._body_since is not None:
                return (self._body_since, self.serial, BODY)
            return None
        if self._messages:
            return None
        if self._header_bytes:
            return (self._headers_since, self.serial, HEADERS)
        return (self._idle_since, self.serial, IDLE)

    def evict(self, state: str) -> None:
        """Makes room: an idle connection is closed, a slow one answered 408 and closed."""
        if state == BODY and self._client_wait is not None:
            # The body read times out now, and the handler answers 408 as for a stall.
            self.evicted = True
            self._client_wait.reschedule(self._loop.time())
        elif state == HEADERS:
            self._refuse(HeaderTimeout())
        elif state == ANSWER:
            self._drop()
        else:
            self.force_close()

    def data_received(self, data: bytes) -> None:
        # The parser refuses a whole piece at its first bad byte, dropping the requests it
        # had parsed before it in the same piece. Pipelined requests are fed one header
        # block at a time, so those before a bad one are still answered, in order. A body
        # goes whole, whatever it holds: it cannot make the gateway split it into pieces.
        #
        # Once aiohttp's queue of parsed requests is full (its transport is then paused), the
        # rest is held as bytes until the queue drains (aiohttp then calls this with b""): the
        # parser would take one more request from each block fed to it, and a single read of
        # tiny requests would be held as thousands of parsed ones.
        if self._held:
            data, self._held = self._held + data, b""
        if self._in_body():
            self._received(data)
            return
        start, end = 0, data.find(HEADER_END)
        while end >= 0 and not self._in_body():
            following = data.find(HEADER_END, end + 4)
            if following < 0:
                break  # the last header block ends in the rest: it goes whole
            if self._queue_full():
                self._held = data[start:]
                return
            self._received(data[start : end + 4])
            start, end = end + 4, following
        self._received(data[start:] if start else data)

    def _queue_full(self) -> bool:
        bound = getattr(self, "_max_msg_queue_size", 0)
        return bool(bound) and len(self._messages) >= bound

    def _in_body(self) -> bool:
        body = self._body
        return body is not None and not body.is_eof()

    def _received(self, data: bytes) -> None:
        if self._force_close or self._close or self._parse_refused:
            return
        body = self._body
        in_body = body is not None and not body.is_eof()
        in_header_block = self._payload_parser is None and not in_body
        body_before = body.total_bytes if in_body else 0
        requests_before = self._request_count
        super().data_received(data)
        if self._request_count != requests_before:
            # A header block is complete: what follows is its body, or the next request.
            self._cancel_header_timer()
            self._header_bytes = 0
            new = self._request_count - requests_before
            message = self._screen(new, body if in_body else None)
            if message is not None and self._body.is_eof():
                self._count_after(data, message, 0)
            return
        if in_body and body is not None and body.is_eof():
            # The body ended in this piece; what follows it is the next header block.
            self._count_after(data, self._message, body_before)
            return
        if not in_header_block or not data:
            return
        self._count_header_bytes(len(data))

    def _screen(self, new: int, reading: Any = None) -> RawRequestMessage | None:
        """The `new` requests just parsed, held to the listener's rules: another version is
        refused (505), nothing is read after a refusal (that one or the parser's), and a body
        being read when the parser refused (`reading`) fails. The last of them becomes the
        one whose body the next bytes belong to; returned, or None for a refusal."""
        if not self._messages:
            return None
        self._refuse_other_versions(min(new, len(self._messages)))
        message, self._body = self._messages[-1]
        if not isinstance(message, RawRequestMessage):
            self._message = None
            if reading is not None:
                self._fail_body(reading)
            self._stop_reading(message)
            return None
        self._message = message
        return message

    def _refuse_other_versions(self, new: int) -> None:
        """llhttp parses HTTP/0.9 and HTTP/2.0 request lines, and aiohttp would answer them
        in their own version's name (an `HTTP/2.0 200` on an HTTP/1.1 connection, the
        request forwarded). The first such request of the `new` ones is answered 505 in its
        turn, as the parser's own refusals are, and nothing after it is read."""
        messages = self._messages
        for index in range(len(messages) - new, len(messages)):
            message, payload = messages[index]
            if isinstance(message, RawRequestMessage) and message.version not in HTTP_1:
                refused = VersionNotSupported()
                messages[index] = (_ErrInfo(505, refused, refused.message), payload)
                while len(messages) > index + 1:
                    messages.pop()
                return

    def _count_header_bytes(self, count: int) -> None:
        if not self._header_bytes:
            self._headers_since = self._loop.time()
        self._header_bytes += count
        if self._header_timer is None:
            self._arm_header_timer()
        if self._header_bytes > self._limits.max_header_block_bytes:
            self._refuse(HeadersTooLarge())

    def _count_after(
        self, data: bytes, message: RawRequestMessage | None, body_before: int
    ) -> None:
        """Bytes after a request that ended in this piece start the next header block.

        They went to the parser with the request before them, so they are counted (and
        timed) here, or a client could hold a partial header block behind each request.
        Where the request ended is worked out from its framing; when a body could hide
        that, fewer bytes are counted, never more.
        """
        if message is None:
            return
        length = message.headers.get("Content-Length", "0")
        if message.chunked or not length.isdigit():
            # A chunked body, or none, ends with a blank line: the last one in the piece.
            end = data.rfind(b"\r\n\r\n")
            left = len(data) - end - 4 if end >= 0 else 0
        elif body_before:
            # The body began in an earlier piece: the rest of it came first in this one.
            left = len(data) - (int(length) - body_before)
        else:
            body_length = int(length)
            end = data.rfind(b"\r\n\r\n", 0, max(0, len(data) - body_length))
            left = len(data) - end - 4 - body_length if end >= 0 else 0
        if left > 0:
            self._count_header_bytes(left)

    async def shutdown(self, timeout: float | None = 15.0) -> None:  # noqa: ASYNC109 - aiohttp's signature
        if not self._request_in_progress and self._task_handler is not None:
            # Idle, or draining the unread body of a refused request: nothing is in flight.
            # aiohttp would wait out its whole shutdown timeout on the drain, since it stops
            # reading from a connection once it is shutting down.
            self._task_handler.cancel()
        await super().shutdown(timeout)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """What aiohttp would answer in plain text, in the envelope instead."""
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has started; no error answer can follow it")
        error = error_for_parser(status, exc)
        request_id = uuid.uuid4().hex
        if isinstance(error, InternalError):
            log.error("unhandled error, request_id=%s", request_id, exc_info=exc)
        else:
            log.info(
                "refused a malformed request from %s: %s (%s)",
                request.remote,
                error.code,
                type(exc).__name__ if exc is not None else "-",
            )
        if self._server.log_refusals:
            _log_refused(request_id, error)
        self._server.on_refused(error.status)
        response = error_response(error, request_id)
        response.force_close()
        return response

    def _fail_body(self, body: Any) -> None:
        """The parser refused bytes of a body being read (a broken chunk size): its request
        answers 400 for it, as its read now fails, and the parser's own refusal queued behind
        it, which would be a second answer to the same request, is dropped. (llhttp puts no
        error on the body for this; its reader would wait out body_idle_timeout_s.)"""
        refusal, _ = self._messages.pop()
        error = web.RequestPayloadError("the request body is malformed")
        error.__cause__ = getattr(refusal, "exc", None)
        body.set_exception(error)

    def _stop_reading(self, parse_error: Any) -> None:
        """The parser refused the request: it is answered once, after the requests queued
        before it, then the connection closes (its answer says so).

        aiohttp would go on feeding the parser, queueing one more error per chunk, each
        holding that chunk through its traceback: megabytes per connection. (Not by
        aiohttp's own `_close`, which would end the connection after the request being
        answered, leaving those queued behind it, the refusal among them, unanswered.)
        """
        if self._parse_refused:
            return
        self._parse_refused = True
        exc = getattr(parse_error, "exc", None)
        if isinstance(exc, BaseException):
            exc.__traceback__ = None
        if self.transport is not None:
            self.transport.pause_reading()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self._loop.call_later(
            self._limits.header_timeout_s, self._header_time_up
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_time_up(self) -> None:
        self._header_timer = None
        if self._force_close or self.transport is None:
            return
        if self._request_in_progress or self._messages:
            # Busy with a request: bytes of a pipelined one wait their turn, not the client.
            self._arm_header_timer()
            return
        if self._header_bytes == 0:
            # Nothing was asked; an idle connection is closed without an answer.
            self.force_close()
            return
        log.info(
            "closed a connection from %s: its headers did not arrive within %ss",
            self._peer(),
            self._limits.header_timeout_s,
        )
        self._refuse(HeaderTimeout())

    def _refuse(self, error: GatewayError) -> None:
        """Answer with the error (unless an answer is under way) and close the connection."""
        transport = self.transport
        if transport is not None and not self._request_in_progress:
            request_id = uuid.uuid4().hex
            transport.write(error_bytes(error, request_id))
            if self._server.log_refusals:
                _log_refused(request_id, error)
            self._server.on_refused(error.status)
        self.force_close()

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if isinstance(peer, tuple) else "-"


class GuardedServer(web.Server):
    """aiohttp's server, making GuardedRequestHandlers and counting their connections."""

    def __init__(
        self,
        server: web.Server,
        limits: ConnectionLimits,
        on_refused: Callable[[int], None] | None = None,
        request_handler: ServerHandler | None = None,
        log_refusals: bool = True,
    ) -> None:
        # Told the status of each request refused before it reached a handler (metrics).
        self.on_refused = on_refused or (lambda status: None)
        # Whether such a request gets an access line (the gateway's listeners, not the
        # sandbox's).
        self.log_refusals = log_refusals
        super().__init__(
            request_handler or server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
        self._limits = limits
        self._open: set[GuardedRequestHandler] = set()
        self._accepted = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def opened(self, handler: GuardedRequestHandler) -> bool:
        """Counts the new connection in; False if there is no room for it.

        At the cap, the connection that has waited longest on its client gives way (see
        `waiting_on_client_since`), so clients holding connections open idle or slowly cannot
        lock out ones that ask promptly; only when every connection is busy with a request is
        the new one refused.
        """
        self._accepted += 1
        handler.serial = self._accepted
        self._open.add(handler)
        if len(self._open) <= self._limits.max_connections:
            return True
        waiting = [
            (since, other)
            for other in self._open
            if other is not handler and (since := other.waiting_on_client_since()) is not None
        ]
        if not waiting:
            return False
        (_, _, state), victim = min(waiting, key=lambda item: item[0])
        log.info(
            "limits.max_connections (%d) reached: closed the connection waiting longest on "
            "its client (%s) for a new one",
            self._limits.max_connections,
            state,
        )
        victim.evict(state)
        return True

    def closed(self, handler: GuardedRequestHandler) -> None:
        self._open.discard(handler)

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, limits=self._limits, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections are guarded by `limits`."""

    def __init__(
        self,
        app: web.Application,
        limits: ConnectionLimits,
        on_refused: Callable[[int], None] | None = None,
        log_refusals: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("access_log", None)
        # A handler whose client went away is cancelled: it would otherwise hold its request
        # (a parsed body, a trade wait) for as long as it takes, with no one to answer.
        kwargs.setdefault("handler_cancellation", True)
        super().__init__(app, **kwargs)
        self._limits = limits
        self._on_refused = on_refused
        self._log_refusals = log_refusals

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        handler = dispatcher(self.app, server.request_handler)
        return GuardedServer(server, self._limits, self._on_refused, handler, self._log_refusals)
