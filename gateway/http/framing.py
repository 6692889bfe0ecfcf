"""Where each request's header block and body begin and end in a connection's bytes.

The listener hands aiohttp's parser (llhttp) one request's bytes at a time, so that a request
the parser refuses cannot take the ones before it down with it, and it bounds every header
block in bytes and time. Both need to know where the parser's boundaries fall inside each piece
a client sends, which the parser does not say: this framer follows the same bytes and says it.

It decides no framing of its own where the parser has one: whether a body is chunked and how
long it is come from the request the parser made of the header block (`expect_body`). What it
finds itself are the places where llhttp, as aiohttp runs it for requests (strict: no bare LF,
no spaces after a chunk size), has no choice:

- a header block ends at the first CRLF CRLF after its first byte; CR and LF before the request
  line are skipped by llhttp, and counted here as the block's (a client sending only line ends
  still holds the connection);
- a chunked body is size lines (`HEXDIG+ [; extensions] CRLF`, a quoted extension cannot hold a
  CR or LF), data, CRLF after each chunk's data, and after the last chunk (`0`) trailer lines up
  to an empty line.

Where the bytes are not what llhttp accepts either, `scan` says BROKEN and the parser, fed the
rest, refuses them with its own reason. A size line or a trailer section over its bound is
TOO_LONG: llhttp bounds neither (a 4 MB chunk extension was read to its end).

Pure: no I/O, no clock; the listener times what the framer counts.
"""

from __future__ import annotations

from enum import Enum

CRLF = b"\r\n"
BLANK_LINE = b"\r\n\r\n"
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
LINE_ENDS = frozenset(b"\r\n")


class Event(Enum):
    """What ends the run of bytes `scan` has just measured."""

    MORE = "the bytes ran out inside the current part"
    HEADERS_END = "a header block is complete"
    BODY_END = "a body is complete; a header block comes next"
    BROKEN = "the bytes are not HTTP/1.1 as the parser takes it"
    TOO_LONG = "a chunk-size line or a trailer section is over its bound"


class State(Enum):
    HEAD = "in a header block, or between requests"
    FRAMING = "a header block ended; waiting to be told its body's framing"
    LENGTH = "in a body of known length"
    CHUNK_LINE = "in a chunk-size line"
    CHUNK_DATA = "in a chunk's data"
    CHUNK_END = "in the CRLF after a chunk's data"
    TRAILERS = "in the trailer section after the last chunk"


class Framer:
    """Follows one connection's request stream; `scan` measures it part by part."""

    def __init__(self, *, max_chunk_line_bytes: int, max_trailer_bytes: int) -> None:
        self.max_chunk_line_bytes = max_chunk_line_bytes
        self.max_trailer_bytes = max_trailer_bytes
        self.state = State.HEAD
        # Bytes of the header block under way (its leading line ends included); after
        # HEADERS_END, the whole block's, until `expect_body`.
        self.head_bytes = 0
        # Header blocks completed so far: the parser makes one request (or refusal) of each.
        self.blocks = 0
        # Whether the block under way has a byte other than a line end yet.
        self._begun = False
        # The last bytes of a blank-line search, which may end in the next piece.
        self._tail = b""
        # Body bytes still to come (LENGTH, CHUNK_DATA), or CRLF bytes matched (CHUNK_END).
        self._left = 0
        self._line = bytearray()
        self._trailer_bytes = 0

    @property
    def between_requests(self) -> bool:
        """At the start of a header block: nothing of the next request has come yet."""
        return self.state is State.HEAD and self.head_bytes == 0

    def expect_body(self, *, chunked: bool, length: int) -> None:
        """The parsed request's framing, after HEADERS_END: what follows is its body."""
        self.head_bytes = 0
        if chunked:
            self.state = State.CHUNK_LINE
            self._line.clear()
        elif length > 0:
            self.state = State.LENGTH
            self._left = length
        else:
            self.state = State.HEAD

    def scan(self, data: bytes, start: int) -> tuple[int, Event]:
        """How far from `start` the current part runs in `data`, and what ends it there.

        MORE means all of `data` from `start` belongs to the part (`head_bytes` counts it when
        the part is a header block). After HEADERS_END, `expect_body` must be called before
        the next scan.
        """
        state = self.state
        if state is State.HEAD:
            return self._scan_head(data, start)
        if state is State.LENGTH:
            taken = min(len(data) - start, self._left)
            self._left -= taken
            if self._left:
                return len(data), Event.MORE
            self.state = State.HEAD
            return start + taken, Event.BODY_END
        if state is State.FRAMING:
            raise RuntimeError("scan before expect_body: the header block's framing is unknown")
        return self._scan_chunked(data, start)

    def _scan_head(self, data: bytes, start: int) -> tuple[int, Event]:
        size = len(data)
        at = start
        if not self._begun:
            while at < size and data[at] in LINE_ENDS:
                at += 1
            self.head_bytes += at - start
            if at == size:
                return size, Event.MORE
            self._begun = True
        end = self._blank_line_end(data, at)
        if end < 0:
            self.head_bytes += size - at
            return size, Event.MORE
        self.head_bytes += end - at
        self.blocks += 1
        self._begun = False
        self.state = State.FRAMING
        return end, Event.HEADERS_END

    def _blank_line_end(self, data: bytes, at: int) -> int:
        """Where the first CRLF CRLF (counting the tail of earlier pieces) ends, or -1."""
        tail = self._tail
        if tail:
            joined = tail + data[at : at + 3]
            found = joined.find(BLANK_LINE)
            if found >= 0:
                self._tail = b""
                return at + found + 4 - len(tail)
        found = data.find(BLANK_LINE, at)
        if found >= 0:
            self._tail = b""
            return found + 4
        self._tail = (tail + data[max(at, len(data) - 3) :])[-3:]
        return -1

    def _scan_chunked(self, data: bytes, start: int) -> tuple[int, Event]:
        size = len(data)
        at = start
        while at < size:
            state = self.state
            if state is State.CHUNK_LINE:
                newline = data.find(b"\n", at)
                stop = size if newline < 0 else newline + 1
                self._line += data[at:stop]
                at = stop
                if len(self._line) > self.max_chunk_line_bytes:
                    return at, Event.TOO_LONG
                if newline < 0:
                    return size, Event.MORE
                chunk_size = _chunk_size(bytes(self._line))
                self._line.clear()
                if chunk_size is None:
                    return at, Event.BROKEN
                if chunk_size:
                    self.state, self._left = State.CHUNK_DATA, chunk_size
                else:
                    self.state, self._tail, self._trailer_bytes = State.TRAILERS, CRLF, 0
            elif state is State.CHUNK_DATA:
                taken = min(size - at, self._left)
                self._left -= taken
                at += taken
                if not self._left:
                    self.state = State.CHUNK_END
            elif state is State.CHUNK_END:
                if data[at] != CRLF[self._left]:
                    return at, Event.BROKEN
                at += 1
                self._left += 1
                if self._left == len(CRLF):
                    self.state, self._left = State.CHUNK_LINE, 0
            else:
                return self._scan_trailers(data, at)
        return size, Event.MORE

    def _scan_trailers(self, data: bytes, at: int) -> tuple[int, Event]:
        # The blank-line search starts from the CRLF that ended the last chunk's size line,
        # so a trailer section that is only an empty line ends at once.
        end = self._blank_line_end(data, at)
        stop = len(data) if end < 0 else end
        self._trailer_bytes += stop - at
        if self._trailer_bytes > self.max_trailer_bytes:
            return stop, Event.TOO_LONG
        if end < 0:
            return stop, Event.MORE
        self.state = State.HEAD
        return end, Event.BODY_END


def _chunk_size(line: bytes) -> int | None:
    """A chunk-size line's size, or None where llhttp would refuse the line."""
    if not line.endswith(CRLF):
        return None
    digits = line[:-2].split(b";", 1)[0]
    if not digits or not HEX_DIGITS.issuperset(digits):
        return None
    return int(digits, 16)
