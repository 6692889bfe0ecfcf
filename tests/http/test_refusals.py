"""What the listener answers by itself: the parser's refusals turned into the gateway's errors,
the raw answer written when no response object can be, the access line of each, and the queue
rules (another HTTP version is 505; a body the parser broke off fails its read instead of
drawing a second answer)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any

import pytest
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.http_writer import HttpVersion
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import ERROR

from gateway import logs
from gateway.core.errors import (
    BadRequest,
    GatewayError,
    HeadersTooLarge,
    HeaderTimeout,
    InternalError,
    UpstreamTimeout,
    VersionNotSupported,
    render,
)
from gateway.http.aiohttp_server import Queued, refusal, refusal_cause
from gateway.http.refusals import (
    ChunkLineTooLong,
    error_bytes,
    error_for_parser,
    fail_read,
    fail_read_instead,
    log_refused,
    refuse_other_versions,
)
from tests.conftest import GatewayFactory
from tests.support import paths
from tests.support.platform_double import PlatformDouble
from tests.support.rawhttp import statuses, until_closed

ECHO = paths.ECHO.encode() + b"?a=1"


def last_envelope(answer: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(answer[answer.rindex(b"\r\n\r\n") + 4 :])
    return document


# -- the parser's refusals as the gateway's errors -------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc", "expected"),
    [
        pytest.param(505, None, VersionNotSupported, id="aiohttp's 505"),
        pytest.param(
            400, BadHttpMessage("Invalid HTTP version"), VersionNotSupported, id="HTTP/3.0"
        ),
        pytest.param(400, BadHttpMessage("Pause on PRI/Upgrade"), VersionNotSupported, id="PRI *"),
        pytest.param(400, LineTooLong("x", "8190"), HeadersTooLarge, id="a line too long"),
        pytest.param(
            400, BadHttpMessage("Too many headers received"), HeadersTooLarge, id="too many headers"
        ),
        pytest.param(400, BadStatusLine("G\x01T"), BadRequest, id="a bad request line"),
        pytest.param(400, None, BadRequest, id="400 without a cause"),
        pytest.param(504, None, UpstreamTimeout, id="a handler's timeout"),
        pytest.param(500, RuntimeError("bug"), InternalError, id="anything else"),
    ],
)
def test_what_the_parser_refused_is_one_of_the_gateways_errors(
    status: int, exc: BaseException | None, expected: type[GatewayError]
) -> None:
    assert type(error_for_parser(status, exc)) is expected


def test_the_listeners_own_refusal_is_answered_as_it_is() -> None:
    refused = HeaderTimeout()
    assert error_for_parser(408, refused) is refused


def test_a_malformed_request_is_named_by_its_kind_never_quoted() -> None:
    error = error_for_parser(400, BadHttpMessage("bad bytes: secret=hunter2"))
    assert error.msg == "the request is not valid HTTP/1.1 (BadHttpMessage)"
    assert "hunter2" not in render(error).decode()


def test_a_chunk_line_too_long_is_a_malformed_message() -> None:
    assert isinstance(ChunkLineTooLong(), BadHttpMessage)
    assert error_for_parser(400, ChunkLineTooLong()).msg.endswith("(ChunkLineTooLong)")


# -- the raw answer and its access line ------------------------------------------------------


def test_a_raw_answer_is_a_whole_http_answer_that_closes() -> None:
    error = HeadersTooLarge()
    answer = error_bytes(error, "req-1")
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert set(lines[1:]) == {
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "X-Request-Id: req-1",
    }
    assert body == render(error)


def test_a_refusal_gets_an_access_line_with_only_its_answer_known(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = HeadersTooLarge()
    with caplog.at_level(logging.INFO, logger="neu_gateway.access"):
        log_refused("req-1", error)
    (record,) = [r for r in caplog.records if r.name == "neu_gateway.access"]
    fields = getattr(record, logs.FIELDS)
    assert fields["request_id"] == "req-1"
    assert (fields["status"], fields["route"], fields["path"]) == (431, "other", "-")
    assert (fields["caller"], fields["app"], fields["method"]) == ("none", "none", "none")
    assert fields["bytes_out"] == len(render(error))


# -- the queue rules -------------------------------------------------------------------------


def message(version: HttpVersion, path: str = "/") -> RawRequestMessage:
    return ERROR._replace(method="GET", path=path, version=version)


HTTP_11, HTTP_20 = HttpVersion(1, 1), HttpVersion(2, 0)


def test_the_first_new_request_in_another_version_is_refused_and_nothing_after_it_kept() -> None:
    queued: deque[Queued] = deque(
        (message(version, f"/{n}"), EMPTY_PAYLOAD)
        for n, version in enumerate([HTTP_11, HTTP_11, HTTP_20, HTTP_11, HTTP_20])
    )
    refuse_other_versions(queued, 4)
    assert [parsed.path for parsed, _ in list(queued)[:2]] == ["/0", "/1"]  # type: ignore[union-attr]
    assert len(queued) == 3
    refused = refusal_cause(queued[2][0])
    assert isinstance(refused, VersionNotSupported)


def test_requests_screened_before_are_left_as_they_are() -> None:
    queued: deque[Queued] = deque(
        [(message(HTTP_20), EMPTY_PAYLOAD), (message(HTTP_11), EMPTY_PAYLOAD)]
    )
    refuse_other_versions(queued, 1)
    assert [parsed.version for parsed, _ in queued] == [HTTP_20, HTTP_11]  # type: ignore[union-attr]


async def test_a_failed_read_is_a_malformed_body_with_its_cause() -> None:
    body = StreamReader(
        BaseProtocol(asyncio.get_running_loop()), 2**16, loop=asyncio.get_running_loop()
    )
    cause = ChunkLineTooLong()
    fail_read(body, cause)
    with pytest.raises(web.RequestPayloadError, match="malformed") as raised:
        await body.read()
    assert raised.value.__cause__ is cause


async def test_a_body_the_parser_broke_off_fails_in_place_of_the_parsers_refusal() -> None:
    loop = asyncio.get_running_loop()
    body = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    cause = BadHttpMessage("Invalid character in chunk size")
    request = message(HTTP_11)
    queued: deque[Queued] = deque(
        [(request, body), (refusal(400, cause, cause.message), EMPTY_PAYLOAD)]
    )
    fail_read_instead(queued, body)
    assert list(queued) == [(request, body)]
    with pytest.raises(web.RequestPayloadError) as raised:
        await body.read()
    assert raised.value.__cause__ is cause


# -- on a real listener ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET %s HTTP/2.0",
        b"GET %s HTTP/0.9",
        b"GET %s",
        b"GET %s HTTP/3.0",
        b"GET %s HTTP/1.2",
        b"POST %s HTTP/2.0",
    ],
)
async def test_another_version_is_505_and_never_forwarded(
    make_gateway: GatewayFactory, platform: PlatformDouble, request_line: bytes
) -> None:
    gateway = await make_gateway()
    answer = await until_closed(gateway.port, request_line % ECHO + b"\r\nHost: x\r\n\r\n")
    assert statuses(answer) == [505]
    envelope = last_envelope(answer)
    assert envelope["error"] == "http_version_not_supported"
    assert envelope["responseHeader"]["status"] == 505
    assert b"HTTP/1.1" in envelope["responseHeader"]["msg"].encode()
    assert platform.received == []


async def test_http2s_connection_preface_is_505(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    answer = await until_closed(gateway.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert statuses(answer) == [505]
    assert last_envelope(answer)["error"] == "http_version_not_supported"
