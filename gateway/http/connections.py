"""How a listener takes connections: bounded header bytes and time, and a connection cap.

aiohttp buffers a request's header block until it is complete, waits for it as long as the
client likes, and takes any number of connections. Each listener of the gateway (the callers'
one and the platform-facing callbacks one) runs behind `server`'s runner instead, whose
connections (this module's handler):

- feed aiohttp's parser one request part at a time, where the framer finds them, so requests
  pipelined ahead of a bad one are answered, in order, before its refusal (`feeding`, the
  handler's base class);
- count every byte of each header block as it arrives, wherever in the stream it begins, and
  answer 431 once they pass what `limits.max_header_bytes` allows;
- answer 408 when a header block is not complete within `limits.header_timeout_s` of its
  first byte (or of the connection opening), and close;
- at `limits.max_connections` open at once, make way for a new one when they have waited
  longest on their client (`client_waits`);
- answer what aiohttp's parser refuses in the platform's envelope (`refusals`), and after any
  refusal read and drop what the client still sends before closing (`lingering`).

This module holds the bounds and the answers; aiohttp's own state is read through
`aiohttp_server`. The body's own timeouts are kept by the handlers that read it (`bodies`),
which mark their waits with `waiting_on_client`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Unpack

from aiohttp import web
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_request import BaseRequest

from gateway import logs
from gateway.core.errors import GatewayError, HeaderTimeout, InternalError, TooManyConnections
from gateway.http.aiohttp_server import ProtocolOptions, refusal
from gateway.http.client_waits import ANSWER, BODY, HEADERS, REFUSED, ClientWaits, Wait
from gateway.http.feeding import FramedRequestHandler
from gateway.http.framing import State
from gateway.http.lingering import LINGER_S, Linger
from gateway.http.middlewares import error_response
from gateway.http.refusals import error_bytes, error_for_parser

if TYPE_CHECKING:
    from gateway.http.server import GuardedServer

log = logs.logger("neu_gateway.listener")

# Room for the request line beside the headers; both are bounded by max_header_bytes on
# their own (aiohttp's line and field limits), this bounds what is held while they arrive.
REQUEST_LINE_ALLOWANCE = 1024
# aiohttp's default; with each field bounded, the block is bounded by the byte count anyway.
MAX_HEADER_FIELDS = 128


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
        """aiohttp's parser limits, for `web.Application(handler_args=...)` or a runner's
        keyword arguments (typed as aiohttp types those: callers pass them on untouched).

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
    waits = protocol.client_waits
    waits.body_wait_began(deadline, protocol.loop.time())
    try:
        yield
    finally:
        waits.body_wait_ended()


def was_evicted(request: web.BaseRequest) -> bool:
    """Whether the request's body read was cut short to make room for a new connection."""
    protocol = request.protocol
    return isinstance(protocol, GuardedRequestHandler) and protocol.client_waits.evicted


class GuardedRequestHandler(FramedRequestHandler):
    """aiohttp's connection handler, with the header block bounded in bytes and time."""

    def __init__(
        self,
        manager: GuardedServer,
        *,
        limits: ConnectionLimits,
        **options: Unpack[ProtocolOptions],
    ) -> None:
        options["keepalive_timeout"] = limits.keepalive_timeout_s
        super().__init__(
            manager,
            max_header_block_bytes=limits.max_header_block_bytes,
            max_chunk_line_bytes=limits.max_header_bytes,
            **options,
        )
        self._limits = limits
        self._server = manager
        self._header_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._linger = Linger()
        self.client_waits = ClientWaits()
        # Requests answered (finish_response), against the header blocks the framer counted.
        self._answered = 0
        # Counted in the server's open connections (not while it lingers after a refusal).
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.client_waits.idle_since = self.loop.time()
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
        self._cancel_send_timer()
        self._linger.cancel()
        if self._counted:
            self._counted = False
            self._server.closed(self)
        super().connection_lost(exc)

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._answered += 1
            self.client_waits.answered(self.loop.time())
            if self._linger.dropping and not self.queued and self.transport is not None:
                # The refusal queued behind other requests is answered: the connection
                # lingers (see _refuse) rather than let aiohttp close it at once.
                self.end_request_loop_after_answer()
                self._start_lingering()
            else:
                self._feed_held()

    def data_received(self, data: bytes) -> None:
        if self._linger.dropping:
            if self._linger.dropped(len(data), self.loop, self.force_close):
                self._drop()
            return
        super().data_received(data)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.client_waits.send_stalled_since = self.loop.time()
        self._send_timer = self.loop.call_later(
            self._limits.send_idle_timeout_s, self._send_time_up
        )

    def resume_writing(self) -> None:
        super().resume_writing()
        self.client_waits.send_stalled_since = None
        self._cancel_send_timer()

    def _cancel_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_time_up(self) -> None:
        self._send_timer = None
        if self.client_waits.send_stalled_since is not None and self.transport is not None:
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

    def waiting_on_client_since(self) -> Wait | None:
        """Since when this connection has been waiting on its client (see `client_waits`);
        None while a request is being worked on (it waits on the platform, not the client)."""
        if self.force_closed or self.transport is None:
            return None
        framer = self._framer
        return self.client_waits.longest(
            handling=self.handling_request,
            # A request is queued, or taken off the queue with its handler not yet started.
            pending=bool(self.queued) or framer.blocks > self._answered,
            in_headers=bool(framer.head_bytes) and framer.state is State.HEAD,
        )

    def evict(self, state: str) -> None:
        """Makes room: an idle connection is closed, a slow one answered 408 and closed."""
        if state == BODY and self.client_waits.cut_body_short(self.loop.time()):
            return  # its handler answers 408, as for a stall
        if state == HEADERS:
            self._refuse(HeaderTimeout())
        elif state == ANSWER:
            self._drop()
        else:
            self.force_close()

    async def shutdown(self, timeout: float | None = 15.0) -> None:  # noqa: ASYNC109 - aiohttp's signature
        # Idle, or draining the unread body of a refused request: nothing is in flight.
        # aiohttp would wait out its whole shutdown timeout on the drain, since it stops
        # reading from a connection once it is shutting down.
        self.cancel_idle_request_loop()
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
        self._server.refused(error, request_id)
        response = error_response(error, request_id)
        response.force_close()
        return response

    def _header_block_began(self) -> None:
        self.client_waits.headers_since = self.loop.time()
        if self._header_timer is None:
            self._arm_header_timer()

    def _header_block_ended(self) -> None:
        self._cancel_header_timer()

    def _unframed_block_began(self) -> None:
        if self._header_timer is None:
            # Its block ended, but no request came of it: still a header block.
            self._arm_header_timer()

    def _reading_stopped(self) -> None:
        # What the client still sends is read and dropped, not parsed: closed with unread
        # bytes, the socket would send a reset that can cost the client the answer.
        self._linger.drop_reads()
        self._cancel_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(
            self._limits.header_timeout_s, self._header_time_up
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_time_up(self) -> None:
        self._header_timer = None
        if self.force_closed or self.transport is None:
            return
        if self.handling_request or self.queued:
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
        and answered in its turn. Otherwise it is written at once, and the connection lingers
        (`lingering`).
        """
        transport = self.transport
        if transport is None or self.force_closed:
            return
        # A request taken off the queue whose handler has not started yet (one turn of the
        # loop) is neither handling nor queued: the parsed-but-unanswered count sees it.
        if self.handling_request or self.queued or self.requests_parsed > self._answered:
            self.queued.append((refusal(error.status, error, error.message), EMPTY_PAYLOAD))
            self._stop_reading()
            self.wake_request_loop()
            return
        request_id = uuid.uuid4().hex
        transport.write(error_bytes(error, request_id))
        self._server.refused(error, request_id)
        self._start_lingering()

    def _start_lingering(self) -> None:
        self._parse_refused = True
        self._cancel_header_timer()
        if self._counted:
            # It holds nothing of the room while it lingers: bounded by lingering's limits.
            self._counted = False
            self._server.closed(self)
        self._linger.start(self.loop, self.force_close)
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            # The answer is all there is: the client sees its end at once.
            transport.write_eof()
        # Nothing more will be asked of aiohttp's request loop; the transport is ours.
        self.cancel_idle_request_loop()
