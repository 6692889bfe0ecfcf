"""How a listener takes connections: bounded header bytes and time, and a connection cap.

aiohttp buffers a request's header block until it is complete, waits for it as long as the
client likes, and takes any number of connections. Each listener of the gateway (the callers'
one and the platform-facing callbacks one) runs behind `server`'s runner instead, whose
connections (this module's handler):

- feed aiohttp's parser one request part at a time, where the framer (`framing`) finds them,
  so requests pipelined ahead of a bad one are answered, in order, before its refusal;
- count every byte of each header block as it arrives, wherever in the stream it begins, and
  answer 431 once they pass what `limits.max_header_bytes` allows;
- answer 408 when a header block is not complete within `limits.header_timeout_s` of its
  first byte (or of the connection opening), and close;
- at `limits.max_connections` open at once, make way for a new one when they have waited
  longest on their client (idle, or sending headers or a body, or leaving an answer unread);
- answer what aiohttp's parser refuses in the platform's envelope (`refusals`), and after any
  refusal read and drop what the client still sends before closing, so the close sends no
  reset that could cost the client its answer.

One class, as aiohttp has one protocol object per connection: each of these is a state of
that object, kept where the parser's callbacks and aiohttp's handler task can see it. The
body's own timeouts are kept by the handlers that read it (`bodies`), which mark their waits
with `waiting_on_client`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.http_writer import HttpVersion10, HttpVersion11
from aiohttp.streams import EMPTY_PAYLOAD
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
    VersionNotSupported,
)
from gateway.http.framing import Event, Framer, State
from gateway.http.middlewares import error_response
from gateway.http.refusals import ChunkLineTooLong, error_bytes, error_for_parser, log_refused

if TYPE_CHECKING:
    from gateway.http.server import GuardedServer

log = logs.logger("neu_gateway.listener")

# Room for the request line beside the headers; both are bounded by max_header_bytes on
# their own (aiohttp's line and field limits), this bounds what is held while they arrive.
REQUEST_LINE_ALLOWANCE = 1024
HTTP_1 = (HttpVersion11, HttpVersion10)
# Bytes held unparsed (see data_received) past which the connection stops reading.
HOLD_BYTES = 64 * 1024
# aiohttp's default; with each field bounded, the block is bounded by the byte count anyway.
MAX_HEADER_FIELDS = 128
# What a connection waits on its client for, as the log names it.
IDLE, HEADERS, BODY, ANSWER = "idle", "sending headers", "sending a body", "reading its answer"
# A new connection refused with 503, all others being busy with requests.
REFUSED = "refused"
# Each of those as neu_gateway_connections_evicted_total's `waiting_on` label.
WAITING_ON = {IDLE: "idle", HEADERS: "headers", BODY: "body", ANSWER: "answer", REFUSED: REFUSED}
LINGER_S = 2.0
LINGER_MAX_S = 10.0
# What a refused connection may still send while it lingers before it is dropped.
LINGER_BYTES = 256 * 1024


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


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, with the header block bounded in bytes and time."""

    def __init__(self, manager: GuardedServer, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        kwargs["keepalive_timeout"] = limits.keepalive_timeout_s
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._server = manager
        self._framer = Framer(
            max_chunk_line_bytes=limits.max_header_bytes,
            max_trailer_bytes=limits.max_header_block_bytes,
        )
        self._header_timer: asyncio.TimerHandle | None = None
        # Requests answered (finish_response), against the header blocks the framer counted.
        self._answered = 0
        # The framer lost its place (see data_received): the parser alone reads on.
        self._unframed = False
        # Refused and answered: what the client still sends is read and dropped (_refuse).
        self._lingering = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._linger_bytes = 0
        self._linger_until = 0.0
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
            # Not counted while it lingers to deliver its 503: it holds nothing of the room.
            self._counted = False
            self._server.closed(self)
            self._server.summary.add(REFUSED)
            self._refuse(TooManyConnections())
            return
        # A connection that never sends a whole request is closed like a slow one.
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        if self._counted:
            self._counted = False
            self._server.closed(self)
        super().connection_lost(exc)
        # The last request's body and head: the body refers back to this handler, and the
        # pair would otherwise wait for the garbage collector (see gateway/runtime/heap.py).
        self._body = self._message = None
        self._held = b""

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._answered += 1
            self._idle_since = self._loop.time()
            self._body_since = None
            if self._lingering and not self._messages and self.transport is not None:
                # The refusal queued behind other requests is answered: the connection
                # lingers (see _refuse) rather than let aiohttp close it at once.
                self._force_close = True
                self._linger()
            elif self._held and not self._upgraded and self.transport is not None:
                # A declined upgrade (`Upgrade: websocket`) is answered: what followed it
                # was held here, not in aiohttp's tail, and is parsed now.
                self.data_received(b"")

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
        if self._messages or self._framer.blocks > self._answered:
            # A request is queued, or taken off the queue with its handler not yet started.
            return None
        if self._framer.head_bytes and self._framer.state is State.HEAD:
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
        # had parsed before it in the same piece. It is fed one part of a request at a time
        # (a header block, then its body), where the framer finds them, so the requests
        # before a bad one are still answered, in order, and every header block is counted
        # and timed whatever pieces it came in.
        #
        # The rest is held as bytes while the parser cannot take another request: its queue
        # of parsed requests is full (a single read of tiny requests would otherwise be held
        # as thousands of parsed ones), a request asked to upgrade (aiohttp keeps what follows
        # it unparsed until it has answered), or the parser is still behind on a header block
        # whose body's framing the framer needs. aiohttp calls this with b"" when it can take
        # more.
        if self._lingering:
            self._lingered(len(data))
            return
        if not data:
            # aiohttp resumes a parser that paused (its queue was full, or a body's reader)
            # this way; it goes on with what it kept before anything held here.
            self._feed(b"", None)
        if self._held:
            data, self._held = self._held + data, b""
        if self._unframed:
            self._feed_unframed(data)
            return
        framer = self._framer
        at, size = 0, len(data)
        while not self._stopped():
            if framer.state is State.FRAMING and not self._take_framing():
                if self._parser_behind():
                    self._hold(data[at:])
                else:
                    # The parser made no request of a whole header block (HTTP/2's
                    # preface): it is fed the rest as it comes and judges it.
                    self._unframed = True
                    if self._header_timer is None:
                        # Its block ended, but no request came of it: still a header block.
                        self._arm_header_timer()
                    self._feed_unframed(data[at:])
                return
            if at == size:
                return
            if framer.between_requests and (self._queue_full() or self._upgraded):
                self._hold(data[at:])
                return
            began = framer.head_bytes
            reading = None if framer.state is State.HEAD else self._body
            end, event = framer.scan(data, at)
            if framer.head_bytes:
                if not began:
                    self._header_block_began()
                if framer.head_bytes > self._limits.max_header_block_bytes:
                    self._refuse(HeadersTooLarge())
                    return
            if event is Event.TOO_LONG:
                self._refuse_framing(reading)
                return
            if event is Event.BROKEN:
                end = size  # the parser refuses the rest with its own reason
            self._feed(data[at:end], reading)
            if event is Event.HEADERS_END:
                self._cancel_header_timer()
            elif event is Event.BROKEN and not self._stopped():
                self._diverged()
            at = end

    def _feed(self, piece: bytes, reading: Any) -> None:
        """Hands the parser one part of a request; `reading` is the body it belongs to."""
        requests_before = self._request_count
        super().data_received(piece)
        new = self._request_count - requests_before
        if new:
            self._screen(new, reading)
        if self._stopped():
            return
        if self._request_count > self._framer.blocks or (
            reading is not None and reading.is_eof() and self._framer.state is not State.HEAD
        ):
            # The parser saw a request, or a body's end, where the framer saw none: the
            # framer's count cannot be trusted for this connection.
            self._diverged()

    def _parser_behind(self) -> bool:
        """Whether the parser may not have reached the bytes fed to it: it stops inside a
        body whose reader is full, and after a request that fills its queue."""
        body = self._body
        return (body is not None and not body.is_eof()) or self._queue_full()

    def _feed_unframed(self, data: bytes) -> None:
        """Bytes the framer cannot place: counted as the header block's, and any request
        the parser makes of them ends the connection (its body could not be told apart)."""
        framer = self._framer
        framer.head_bytes += len(data)
        if framer.head_bytes > self._limits.max_header_block_bytes:
            self._refuse(HeadersTooLarge())
            return
        self._feed(data, None)

    def _take_framing(self) -> bool:
        """Tells the framer the body's framing of the header block it has just ended, from
        the request the parser made of it; False while the parser is still behind."""
        if self._request_count < self._framer.blocks:
            return False
        message = self._message
        if message is None:
            self._diverged()
            return False
        length = message.headers.get("Content-Length", "0")
        self._framer.expect_body(
            chunked=bool(message.chunked), length=int(length) if length.isdigit() else 0
        )
        return True

    def _hold(self, rest: bytes) -> None:
        self._held = rest
        if len(rest) >= HOLD_BYTES and not self._buffer_paused:
            # Resumed by aiohttp as its queue drains (it then calls data_received(b"")).
            self._pause_reading_for_buffer()

    def _stopped(self) -> bool:
        return self._force_close or self._close or self._parse_refused

    def _diverged(self) -> None:
        log.warning(
            "closed a connection from %s: the parser and the listener's framing disagree "
            "on where a request ends",
            self._peer(),
        )
        self._refuse(BadRequest("the request is not valid HTTP/1.1 (framing)"))

    def _refuse_framing(self, reading: Any) -> None:
        """A chunk-size line or a trailer section over its bound: the body read fails (its
        handler answers 400), and nothing more is read."""
        if reading is None or reading.is_eof():
            self._refuse(BadRequest("the request is not valid HTTP/1.1 (ChunkLineTooLong)"))
            return
        cause = ChunkLineTooLong()
        error = web.RequestPayloadError("the request body is malformed")
        error.__cause__ = cause
        reading.set_exception(error)
        self._stop_reading(None)

    def _header_block_began(self) -> None:
        self._headers_since = self._loop.time()
        if self._header_timer is None:
            self._arm_header_timer()

    def _queue_full(self) -> bool:
        bound = getattr(self, "_max_msg_queue_size", 0)
        return bool(bound) and len(self._messages) >= bound

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
            log_refused(request_id, error)
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
        # What the client still sends is read and dropped, not parsed: closed with unread
        # bytes, the socket would send a reset that can cost the client the answer.
        self._parse_refused = self._lingering = True
        self._cancel_header_timer()
        exc = getattr(parse_error, "exc", None)
        if isinstance(exc, BaseException):
            exc.__traceback__ = None

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
        framer = self._framer
        if framer.head_bytes == 0 or (framer.state is not State.HEAD and not self._unframed):
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
        """Answers with the error and closes the connection; nothing more is parsed.

        Behind requests still to be answered, the refusal is queued as the parser's own are,
        and answered in its turn. Otherwise it is written at once, and the connection reads
        and drops what the client still sends until it closes its end (or LINGER_S): closed
        with unread bytes, the socket would send a reset, and the client could lose the
        answer before reading it.
        """
        transport = self.transport
        if transport is None or self._force_close:
            return
        if self._request_in_progress or self._messages:
            self._messages.append((_ErrInfo(error.status, error, error.message), EMPTY_PAYLOAD))
            self._stop_reading(None)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        request_id = uuid.uuid4().hex
        transport.write(error_bytes(error, request_id))
        if self._server.log_refusals:
            log_refused(request_id, error)
        self._server.on_refused(error.status)
        self._linger()

    def _linger(self) -> None:
        self._lingering = True
        self._parse_refused = True
        self._cancel_header_timer()
        if self._counted:
            # It holds nothing of the room while it lingers: bounded by LINGER_S and _BYTES.
            self._counted = False
            self._server.closed(self)
        if self._linger_timer is None:
            self._linger_until = self._loop.time() + LINGER_MAX_S
            self._linger_timer = self._loop.call_later(LINGER_S, self.force_close)
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            # The answer is all there is: the client sees its end at once.
            transport.write_eof()
        if self._task_handler is not None and not self._request_in_progress:
            # Nothing more will be asked of aiohttp's handler; the transport is ours.
            self._task_handler.cancel()

    def _lingered(self, count: int) -> None:
        """Bytes came while lingering: dropped, and the close put off LINGER_S from now (a
        client still sending is not done with its request), within LINGER_MAX_S and
        LINGER_BYTES in all."""
        self._linger_bytes += count
        timer = self._linger_timer
        if self._linger_bytes > LINGER_BYTES or (
            timer is not None and self._loop.time() > self._linger_until
        ):
            self._drop()
        elif timer is not None:
            # (Before it is answered, a refusal queued behind requests waits on them only.)
            timer.cancel()
            self._linger_timer = self._loop.call_later(LINGER_S, self.force_close)

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if isinstance(peer, tuple) else "-"
