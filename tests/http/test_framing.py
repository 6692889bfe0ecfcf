"""The framer finds every header block's and body's end where llhttp does, whatever pieces the
bytes come in, and counts every byte of the header block under way."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import httptools
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.http.framing import Event, Framer, State

FRAMER_LIMITS = {"max_chunk_line_bytes": 1024, "max_trailer_bytes": 4096}


@dataclass(frozen=True)
class Request:
    """One request's bytes and its framing, as a client would send it."""

    head: bytes
    body: bytes
    chunked: bool
    length: int


TOKEN = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
VALUE = st.text("abcdefghijklmnopqrstuvwxyz0123456789 =;,/", max_size=40).map(str.strip)
# Body bytes may hold anything a header block ends with.
BODY_BYTES = st.binary(max_size=60) | st.sampled_from([b"\r\n\r\n", b"\r\n", b"0\r\n\r\n"])


@st.composite
def requests(draw: st.DrawFn) -> Request:
    leading = draw(st.sampled_from([b"", b"\r\n", b"\n", b"\r\n\r\n"]))
    fields = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=5))
    kind = draw(st.sampled_from(["none", "length", "chunked"]))
    lines = [b"POST /neuopenapi/test/echo HTTP/1.1", b"Host: x"]
    lines += [f"x-{name}: {value}".encode() for name, value in fields]
    body = b""
    length = 0
    if kind == "length":
        body = draw(BODY_BYTES)
        length = len(body)
        lines.append(f"Content-Length: {length}".encode())
    elif kind == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        for data in draw(st.lists(st.binary(min_size=1, max_size=30), max_size=4)):
            extension = draw(st.sampled_from([b"", b";a=b", b';name="q;\\"x"', b";" + b"e" * 200]))
            body += f"{len(data):x}".encode() + extension + b"\r\n" + data + b"\r\n"
        trailers = draw(st.sampled_from([b"", b"x-t: 1\r\n", b"x-a: 1\r\nx-b: 2\r\n"]))
        body += b"0\r\n" + trailers + b"\r\n"
    head = leading + b"\r\n".join(lines) + b"\r\n\r\n"
    return Request(head, body, kind == "chunked", length)


# What may follow the last whole request: part of a header block, never its end.
PARTIAL = st.binary(max_size=80).filter(lambda data: b"\r\n\r\n" not in data) | st.just(
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 3000
)


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def frame(pieces: list[bytes], stream: list[Request]) -> tuple[list[tuple[Event, int]], Framer]:
    """Feeds the pieces as the listener does, telling the framer each request's framing as
    the parser would; returns where each event fell in the whole stream."""
    framer = Framer(**FRAMER_LIMITS)
    events: list[tuple[Event, int]] = []
    offset = 0
    for piece in pieces:
        at = 0
        while at < len(piece):
            end, event = framer.scan(piece, at)
            assert end > at or event is not Event.MORE
            if event is not Event.MORE:
                events.append((event, offset + end))
            if event is Event.HEADERS_END:
                request = stream[framer.blocks - 1]
                framer.expect_body(chunked=request.chunked, length=request.length)
            assert event not in (Event.BROKEN, Event.TOO_LONG)
            at = end
        offset += len(piece)
    return events, framer


def expected_events(stream: list[Request]) -> list[tuple[Event, int]]:
    events: list[tuple[Event, int]] = []
    position = 0
    for request in stream:
        position += len(request.head)
        events.append((Event.HEADERS_END, position))
        if request.body:
            position += len(request.body)
            events.append((Event.BODY_END, position))
    return events


class Oracle:
    """llhttp (httptools), fed one byte at a time, says where it ends each part."""

    def __init__(self) -> None:
        self.position = 0
        self.events: list[tuple[str, int]] = []
        self.parser = httptools.HttpRequestParser(self)

    def on_headers_complete(self) -> None:
        self.events.append(("headers", self.position + 1))

    def on_message_complete(self) -> None:
        self.events.append(("message", self.position + 1))

    def feed(self, data: bytes) -> None:
        for index in range(len(data)):
            self.position = index
            self.parser.feed_data(data[index : index + 1])


@settings(max_examples=300, deadline=None)
@given(st.lists(requests(), max_size=4), PARTIAL, st.lists(st.integers(0, 10_000), max_size=8))
@example([], b"\r\n\r\n\r", [])
@example(
    [
        Request(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", b"0123456789", False, 10
        )
    ],
    b"GET / HTTP/1.1\r\n" + b"a" * 60,
    [48],
)
def test_every_boundary_falls_where_llhttp_puts_it_whatever_the_pieces(
    stream: list[Request], partial: bytes, cuts: list[int]
) -> None:
    whole = b"".join(request.head + request.body for request in stream)
    events, framer = frame(splits(whole + partial, cuts), stream)
    assert events == expected_events(stream)
    # Every byte after the last whole request is counted as the header block under way.
    assert framer.state is State.HEAD
    assert framer.head_bytes == len(partial)

    oracle = Oracle()
    oracle.feed(whole)
    heads = [position for kind, position in oracle.events if kind == "headers"]
    assert heads == [position for event, position in events if event is Event.HEADERS_END]
    assert [position for kind, position in oracle.events if kind == "message"] == _message_ends(
        stream
    )


def _message_ends(stream: list[Request]) -> list[int]:
    ends, position = [], 0
    for request in stream:
        position += len(request.head) + len(request.body)
        ends.append(position)
    return ends


@pytest.mark.parametrize(
    ("body", "event"),
    [
        pytest.param(b"5 \r\nhello\r\n0\r\n\r\n", Event.BROKEN, id="space after a chunk size"),
        pytest.param(b"5\nhello\r\n0\r\n\r\n", Event.BROKEN, id="bare LF after a chunk size"),
        pytest.param(b"5\r\nhelloX\r\n0\r\n\r\n", Event.BROKEN, id="no CRLF after chunk data"),
        pytest.param(b"0x5\r\nhello\r\n", Event.BROKEN, id="chunk size not hex"),
        pytest.param(b";a=b\r\n", Event.BROKEN, id="no chunk size"),
        pytest.param(b"5;" + b"e" * 2000 + b"\r\n", Event.TOO_LONG, id="chunk extension too long"),
        pytest.param(b"5;" + b"e" * 2000, Event.TOO_LONG, id="unfinished chunk extension too long"),
        pytest.param(b"0\r\n" + b"x-t: 1\r\n" * 1000, Event.TOO_LONG, id="trailers too long"),
    ],
)
def test_chunked_framing_llhttp_refuses_or_that_is_unbounded_is_said(
    body: bytes, event: Event
) -> None:
    for pieces in ([body], [body[:1], body[1:3], body[3:]], [bytes([b]) for b in body]):
        framer = Framer(**FRAMER_LIMITS)
        framer.expect_body(chunked=True, length=0)
        seen = [framer.scan(piece, 0)[1] for piece in pieces]
        assert event in seen


def test_scanning_before_the_framing_is_known_is_a_programming_error() -> None:
    framer = Framer(**FRAMER_LIMITS)
    assert framer.scan(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET", 0)[1] is Event.HEADERS_END
    with pytest.raises(RuntimeError, match="expect_body"):
        framer.scan(b"GET", 0)
