"""Request lines in another HTTP version than 1.1 or 1.0, alone and pipelined, on raw sockets:
answered 505 in the envelope, never forwarded; and requests pipelined ahead of a refused one
answered first."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import GatewayFactory
from tests.support.platform_double import PlatformDouble
from tests.support.rawhttp import statuses, until_closed

ECHO = b"/neuopenapi/test/echo?a=1"
OK = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def last_envelope(answer: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(answer[answer.rindex(b"\r\n\r\n") + 4 :])
    return document


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


async def test_requests_pipelined_ahead_of_another_version_are_answered_first(
    make_gateway: GatewayFactory, platform: PlatformDouble
) -> None:
    gateway = await make_gateway()
    other = b"GET " + ECHO + b" HTTP/2.0\r\nHost: x\r\n\r\n"
    # The connection closes after the 505: the request behind it is not read.
    answer = await until_closed(gateway.port, OK + OK + other + OK)
    assert statuses(answer) == [200, 200, 505]
    assert platform.received == []


async def test_requests_pipelined_ahead_of_a_malformed_one_are_answered_first(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    answer = await until_closed(gateway.port, OK + b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n" + OK)
    assert statuses(answer) == [200, 400]
    assert last_envelope(answer)["error"] == "bad_request"


async def test_a_request_body_holding_blank_lines_is_not_taken_for_requests(
    make_gateway: GatewayFactory, platform: PlatformDouble
) -> None:
    gateway = await make_gateway()
    body = b"a=1&b=\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"
    post = (
        b"POST " + ECHO + b" HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    answer = await until_closed(
        gateway.port, post + OK + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert statuses(answer) == [200, 200, 200]
    assert platform.last.params["b"] == "\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"


async def test_pipelined_http_1_0_requests_end_with_the_first(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    answer = await until_closed(gateway.port, b"GET /healthz HTTP/1.0\r\n\r\n" * 2)
    assert statuses(answer) == [200]
