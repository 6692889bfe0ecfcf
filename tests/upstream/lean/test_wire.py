"""What the lean client writes and undoes: the request's head, the answer's encoding."""

from __future__ import annotations

import functools
import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from gateway.core.errors import UpstreamBadResponse
from gateway.upstream.lean.wire import decoded, request_head
from gateway.upstream.transport import Answer


def test_a_header_with_a_line_break_is_never_written() -> None:
    with pytest.raises(ValueError, match="line break"):
        request_head("GET", URL("http://h/p"), "h", CIMultiDict({"X-A": "1\r\nHost: evil"}), None)


def test_the_request_head_names_the_host_and_the_length() -> None:
    head = request_head("POST", URL("http://h:81/p?q=1"), "h:81", CIMultiDict(), b"abc")
    assert head.startswith(b"POST /p?q=1 HTTP/1.1\r\nHost: h:81\r\n")
    assert b"Content-Length: 3\r\n" in head
    assert head.endswith(b"\r\n\r\n")


def encoded(coding: str, body: bytes) -> Answer:
    compress = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "raw-deflate": functools.partial(zlib.compress, wbits=-15),
    }[coding]
    name = "deflate" if coding == "raw-deflate" else coding
    return Answer(200, CIMultiDict({"Content-Encoding": name}), compress(body))


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=3000),
    coding=st.sampled_from(["gzip", "deflate", "raw-deflate"]),
    cap=st.integers(min_value=0, max_value=3000),
)
def test_a_compressed_answer_decodes_exactly_or_is_refused_past_the_cap(
    body: bytes, coding: str, cap: int
) -> None:
    answer = encoded(coding, body)
    if len(body) <= cap:
        assert decoded(answer, cap).body == body
    else:
        with pytest.raises(UpstreamBadResponse, match="max_response_bytes"):
            decoded(answer, cap)


def test_a_compression_bomb_stops_at_the_cap() -> None:
    bomb = encoded("gzip", b"\0" * 50_000_000)
    assert len(bomb.body) < 100_000
    with pytest.raises(UpstreamBadResponse, match="max_response_bytes"):
        decoded(bomb, 1 << 20)


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_an_encoding_the_gateway_cannot_read_is_refused(coding: str) -> None:
    answer = Answer(200, CIMultiDict({"Content-Encoding": coding}), b"\x1f")
    with pytest.raises(UpstreamBadResponse, match=coding):
        decoded(answer, 100)


def test_a_callers_user_agent_is_kept_and_the_gateways_codings_are_offered() -> None:
    head = request_head("GET", URL("http://h/p"), "h", CIMultiDict({"User-Agent": "orders"}), None)
    assert b"User-Agent: orders\r\n" in head
    assert b"neu-gateway" not in head
    assert b"Accept-Encoding: gzip, deflate\r\n" in head
    assert b"Content-Length" not in head


def test_a_post_without_a_body_says_its_length_is_zero() -> None:
    head = request_head("POST", URL("http://h/p"), "h", CIMultiDict(), None)
    assert b"Content-Length: 0\r\n" in head
    assert b"User-Agent: neu-gateway\r\n" in head


def test_an_answer_without_a_coding_is_returned_as_it_came() -> None:
    plain = Answer(200, CIMultiDict({"Content-Encoding": "identity"}), b"{}")
    assert decoded(plain, 1) is plain
    empty = Answer(204, CIMultiDict({"Content-Encoding": "gzip"}), b"")
    assert decoded(empty, 1) is empty


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        pytest.param("x-gzip", gzip.compress(b"abc"), id="x-gzip"),
        pytest.param("deflate", zlib.compress(b"abc", wbits=-15), id="raw deflate"),
        pytest.param("gzip", gzip.compress(b"a") + gzip.compress(b"bc"), id="two gzip members"),
    ],
)
def test_what_servers_send_as_gzip_or_deflate_is_decoded(coding: str, body: bytes) -> None:
    answer = decoded(Answer(200, CIMultiDict({"Content-Encoding": coding}), body), 100)
    assert answer.body == b"abc"
    assert answer.status == 200


@pytest.mark.parametrize(
    ("coding", "body", "says"),
    [
        pytest.param("gzip", gzip.compress(b"abc")[:-4], "ends before its end", id="cut"),
        pytest.param("gzip", gzip.compress(b"abc") + b"xyz", "bytes after its end", id="trail"),
        pytest.param("gzip", b"not gzip at all", "could not be decoded", id="not gzip"),
        pytest.param("deflate", b"not deflate", "could not be decoded", id="not deflate"),
        pytest.param(
            "gzip", gzip.compress(b"a") + b"\x1f\x8bnot", "could not be decoded", id="bad member"
        ),
    ],
)
def test_an_answer_that_does_not_decode_whole_is_refused(
    coding: str, body: bytes, says: str
) -> None:
    with pytest.raises(UpstreamBadResponse, match=says):
        decoded(Answer(200, CIMultiDict({"Content-Encoding": coding}), body), 100)
