"""What the listener answers by itself, before any handler runs: its own refusals (408, 431,
503, a framing error) and the parser's (a malformed request, another HTTP version), in the
platform's envelope instead of aiohttp's plain text, each with an access line; and how a
refusal takes the place of what the parser queued (another version, a broken body)."""

from __future__ import annotations

from collections import deque
from http import HTTPStatus

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.http_writer import HttpVersion10, HttpVersion11
from aiohttp.streams import StreamReader

from gateway import logs
from gateway.core.errors import (
    BadRequest,
    GatewayError,
    HeadersTooLarge,
    InternalError,
    UpstreamTimeout,
    VersionNotSupported,
    render,
)
from gateway.http.aiohttp_server import Queued, refusal, refusal_cause
from gateway.metrics import NONE, OTHER

HTTP_1 = (HttpVersion11, HttpVersion10)


def log_refused(request_id: str, error: GatewayError) -> None:
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
    if isinstance(exc, GatewayError):
        return exc  # the listener's own refusal, queued behind earlier requests
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


class ChunkLineTooLong(BadHttpMessage):
    """A chunk-size line, with its extensions, or a trailer section over the listener's bound."""

    def __init__(self) -> None:
        super().__init__("a chunk-size line or trailer section is too long")


def refuse_other_versions(queued: deque[Queued], new: int) -> None:
    """llhttp parses HTTP/0.9 and HTTP/2.0 request lines, and aiohttp would answer them in
    their own version's name (an `HTTP/2.0 200` on an HTTP/1.1 connection, the request
    forwarded). The first such request of the last `new` queued is answered 505 in its turn,
    as the parser's own refusals are, and what was queued after it is dropped."""
    for index in range(len(queued) - new, len(queued)):
        message, payload = queued[index]
        if isinstance(message, RawRequestMessage) and message.version not in HTTP_1:
            refused = VersionNotSupported()
            queued[index] = (refusal(refused.status, refused, refused.message), payload)
            while len(queued) > index + 1:
                queued.pop()
            return


def fail_read(body: StreamReader, cause: BaseException | None) -> None:
    """The handler reading `body` fails with a malformed body (answered 400) for `cause`."""
    error = web.RequestPayloadError("the request body is malformed")
    error.__cause__ = cause
    body.set_exception(error)


def fail_read_instead(queued: deque[Queued], body: StreamReader) -> None:
    """The parser refused bytes of a body being read (a broken chunk size): its request
    answers 400 for it, as its read now fails, and the parser's own refusal, queued last,
    which would be a second answer to the same request, is dropped. (llhttp puts no error on
    the body for this; its reader would wait out body_idle_timeout_s.)"""
    parsed, _ = queued.pop()
    fail_read(body, refusal_cause(parsed))
