"""aiohttp's parser fed one request part at a time, where the framer finds them.

The parser (llhttp) refuses a whole piece at its first bad byte, dropping the requests it had
parsed before it in the same piece. Fed one part of a request at a time (a header block, then
its body), where the framer (`framing`) finds them, it leaves the requests before a bad one
whole: they are answered, in order, before its refusal; and every header block's bytes are
known as they arrive, whatever pieces it came in, for the listener to bound.

What the parser makes of them is screened here as well: a request in another HTTP version is
refused (505), nothing is read after a refusal, and a body being read when the parser refused
fails rather than waits. How a refusal is answered, and what bounds a header block, are the
listener's (`connections`), through the hooks this class leaves to it.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Unpack

from aiohttp import web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from gateway import logs
from gateway.core.errors import BadRequest, GatewayError, HeadersTooLarge
from gateway.http.aiohttp_server import Parsed, ProtocolOptions, RequestHandlerBase, refusal_cause
from gateway.http.framing import Event, Framer, State
from gateway.http.refusals import (
    ChunkLineTooLong,
    fail_read,
    fail_read_instead,
    refuse_other_versions,
)

log = logs.logger("neu_gateway.listener")

# Bytes held unparsed (see data_received) past which the connection stops reading.
HOLD_BYTES = 64 * 1024


class FramedRequestHandler(RequestHandlerBase):
    """aiohttp's connection handler, its parser fed request part by request part."""

    def __init__(
        self,
        manager: web.Server,
        *,
        max_header_block_bytes: int,
        max_chunk_line_bytes: int,
        **options: Unpack[ProtocolOptions],
    ) -> None:
        super().__init__(manager, **options)
        self._max_header_block_bytes = max_header_block_bytes
        self._framer = Framer(
            max_chunk_line_bytes=max_chunk_line_bytes, max_trailer_bytes=max_header_block_bytes
        )
        # The framer lost its place (see data_received): the parser alone reads on.
        self._unframed = False
        # The body of the request whose headers came last: while it is still arriving,
        # the bytes belong to it, not to a header block.
        self._body: StreamReader | None = None
        self._message: RawRequestMessage | None = None
        # A request was refused (by the parser or the listener): nothing after it is read.
        self._parse_refused = False
        # Pipelined bytes waiting for aiohttp's queue of parsed requests to drain.
        self._held = b""

    @abstractmethod
    def _refuse(self, error: GatewayError) -> None:
        """Answers with the error, after the requests queued before it, and closes."""

    @abstractmethod
    def _header_block_began(self) -> None:
        """The first byte of a header block has come."""

    @abstractmethod
    def _header_block_ended(self) -> None:
        """The header block under way is complete."""

    @abstractmethod
    def _unframed_block_began(self) -> None:
        """A header block ended, but the parser made no request of it: what follows is
        counted as a header block's."""

    @abstractmethod
    def _reading_stopped(self) -> None:
        """A request was refused: what the client sends from now on is not parsed."""

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        # The last request's body and head: the body refers back to this handler, and the
        # pair would otherwise wait for the garbage collector (see gateway/runtime/heap.py).
        self._body = self._message = None
        self._held = b""

    def data_received(self, data: bytes) -> None:
        # The rest is held as bytes while the parser cannot take another request: its queue
        # of parsed requests is full (a single read of tiny requests would otherwise be held
        # as thousands of parsed ones), a request asked to upgrade (aiohttp keeps what follows
        # it unparsed until it has answered), or the parser is still behind on a header block
        # whose body's framing the framer needs. aiohttp calls this with b"" when it can take
        # more.
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
                    self._unframed_block_began()
                    self._feed_unframed(data[at:])
                return
            if at == size:
                return
            if framer.between_requests and (self.queue_full or self.upgraded):
                self._hold(data[at:])
                return
            began = framer.head_bytes
            reading = None if framer.state is State.HEAD else self._body
            end, event = framer.scan(data, at)
            if framer.head_bytes:
                if not began:
                    self._header_block_began()
                if framer.head_bytes > self._max_header_block_bytes:
                    self._refuse(HeadersTooLarge())
                    return
            if event is Event.TOO_LONG:
                self._refuse_framing(reading)
                return
            if event is Event.BROKEN:
                end = size  # the parser refuses the rest with its own reason
            self._feed(data[at:end], reading)
            if event is Event.HEADERS_END:
                self._header_block_ended()
            elif event is Event.BROKEN and not self._stopped():
                self._diverged()
            at = end

    def _feed_held(self) -> None:
        """What was held behind a declined upgrade (`Upgrade: websocket`), once it is
        answered: held here, not in aiohttp's tail, it is parsed now."""
        if self._held and not self.upgraded and self.transport is not None:
            self.data_received(b"")

    def _feed(self, piece: bytes, reading: StreamReader | None) -> None:
        """Hands the parser one part of a request; `reading` is the body it belongs to."""
        requests_before = self.requests_parsed
        super().data_received(piece)
        new = self.requests_parsed - requests_before
        if new:
            self._screen(new, reading)
        if self._stopped():
            return
        if self.requests_parsed > self._framer.blocks or (
            reading is not None and reading.is_eof() and self._framer.state is not State.HEAD
        ):
            # The parser saw a request, or a body's end, where the framer saw none: the
            # framer's count cannot be trusted for this connection.
            self._diverged()

    def _parser_behind(self) -> bool:
        """Whether the parser may not have reached the bytes fed to it: it stops inside a
        body whose reader is full, and after a request that fills its queue."""
        body = self._body
        return (body is not None and not body.is_eof()) or self.queue_full

    def _feed_unframed(self, data: bytes) -> None:
        """Bytes the framer cannot place: counted as the header block's, and any request
        the parser makes of them ends the connection (its body could not be told apart)."""
        framer = self._framer
        framer.head_bytes += len(data)
        if framer.head_bytes > self._max_header_block_bytes:
            self._refuse(HeadersTooLarge())
            return
        self._feed(data, None)

    def _take_framing(self) -> bool:
        """Tells the framer the body's framing of the header block it has just ended, from
        the request the parser made of it; False while the parser is still behind."""
        if self.requests_parsed < self._framer.blocks:
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
        if len(rest) >= HOLD_BYTES:
            self.pause_reading_until_drained()

    def _stopped(self) -> bool:
        return self.closing or self._parse_refused

    def _diverged(self) -> None:
        log.warning(
            "closed a connection from %s: the parser and the listener's framing disagree "
            "on where a request ends",
            self._peer(),
        )
        self._refuse(BadRequest("the request is not valid HTTP/1.1 (framing)"))

    def _refuse_framing(self, reading: StreamReader | None) -> None:
        """A chunk-size line or a trailer section over its bound: the body read fails (its
        handler answers 400), and nothing more is read."""
        if reading is None or reading.is_eof():
            self._refuse(BadRequest("the request is not valid HTTP/1.1 (ChunkLineTooLong)"))
            return
        fail_read(reading, ChunkLineTooLong())
        self._stop_reading()

    def _screen(self, new: int, reading: StreamReader | None) -> None:
        """The `new` requests just parsed, held to the listener's rules: another version is
        refused (505), nothing is read after a refusal (that one or the parser's), and a body
        being read when the parser refused (`reading`) fails. The last of them becomes the
        one whose body the next bytes belong to."""
        queued = self.queued
        if not queued:
            return
        refuse_other_versions(queued, min(new, len(queued)))
        parsed, self._body = queued[-1]
        if isinstance(parsed, RawRequestMessage):
            self._message = parsed
            return
        self._message = None
        if reading is not None:
            fail_read_instead(queued, reading)
        self._stop_reading(parsed)

    def _stop_reading(self, refused: Parsed | None = None) -> None:
        """A request was refused: it is answered once, after the requests queued before it,
        then the connection closes (its answer says so).

        aiohttp would go on feeding the parser, queueing one more error per chunk, each
        holding that chunk through its traceback: megabytes per connection. (Not by
        aiohttp's own `close()`, which would end the connection after the request being
        answered, leaving those queued behind it, the refusal among them, unanswered.)
        """
        if self._parse_refused:
            return
        self._parse_refused = True
        self._reading_stopped()
        cause = None if refused is None else refusal_cause(refused)
        if cause is not None:
            cause.__traceback__ = None

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if isinstance(peer, tuple) else "-"
