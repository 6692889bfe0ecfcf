"""Request id, access log, and the one place errors become the platform's envelope."""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from gateway import logs
from gateway.core.errors import (
    BodyTooLarge,
    ExpectationFailed,
    GatewayError,
    HeadersTooLarge,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RequestTimeout,
    TooManyInFlight,
    render,
)
from gateway.core.headers import REQUEST_ID_HEADER, TRACEPARENT_HEADER
from gateway.core.redaction import redact
from gateway.core.tracing import Trace, read, started
from gateway.http.keys import APP_NAME, CALLER_NAME, CLOCK, METRICS, REQUEST_ID, ROUTE, config_of
from gateway.metrics import CURRENT_CALL, NONE, OTHER, UpstreamCall

log = logs.logger("neu_gateway")

TRACE = web.RequestKey("neu_trace", Trace)
ADMIN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
CLIENT_CLOSED = 499
# A caller's id is kept only when it cannot break a log line or a header.
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


# Request ids need to be unique, not unguessable: a generator seeded once from the OS, not a
# system call per request.
_IDS = random.Random(os.urandom(32))  # noqa: S311 - ids, not secrets


def request_id_for(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER)
    if given is not None and _ACCEPTABLE_REQUEST_ID.fullmatch(given) and not _credential(given):
        return given
    # 128 random bits, as uuid4 has, without building a UUID object.
    return f"{_IDS.getrandbits(128):032x}"


def trace_for(request: web.Request) -> Trace:
    """The request's trace: the caller's `traceparent`, or one started here when none came or
    it is malformed (two of them are: W3C Trace Context, section 3.2). The same for the call
    upstream and the access line."""
    trace = request.get(TRACE)
    if trace is None:
        given = request.headers.getall(TRACEPARENT_HEADER, ())
        trace = read(given[0]) if len(given) == 1 else None
        if trace is None:
            trace = started(_IDS.getrandbits(128), _IDS.getrandbits(64))
        request[TRACE] = trace
    return trace


def _credential(request_id: str) -> bool:
    """Whether a caller's id looks like a credential (a known secret, a sign, a JWT): it is
    logged, returned and sent upstream as it is, so such a one is replaced."""
    return redact(request_id, logs.REDACTION.secrets) != request_id


def error_response(error: GatewayError, request_id: str) -> web.Response:
    response = web.Response(
        status=error.status, body=render(error), content_type="application/json"
    )
    response.headers[REQUEST_ID_HEADER] = request_id
    response.headers.update(error.headers)
    if isinstance(error, MethodNotAllowed) and "Allow" not in error.headers:
        response.headers["Allow"] = "GET, POST"
    if isinstance(error, BodyTooLarge | HeadersTooLarge | RequestTimeout):
        # The rest of the body is not read, so the connection cannot carry another request.
        response.force_close()
    elif isinstance(error, TooManyInFlight):
        # The caller holds enough connections already: this one is let go at once.
        response.force_close()
    return response


def close_if_unread(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """A body refused unread ends the connection: draining it would be work for the
    caller's choosing."""
    if not request.content.is_eof():
        response.force_close()


def _from_http_exception(exc: web.HTTPException) -> GatewayError:
    if exc.status == 404:
        return NotFound()
    if exc.status == 405:
        return MethodNotAllowed()
    if exc.status == 413:
        return BodyTooLarge()
    if exc.status == 417:
        return ExpectationFailed()
    error = GatewayError(exc.reason)
    error.status = exc.status
    error.code = f"http_{exc.status}"
    return error


def _is_probe(request: web.Request) -> bool:
    """The request reached an admin endpoint's own route: a catch-all route that happens to
    match /healthz (the callbacks listener's) is traffic like any other path."""
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in ADMIN_PATHS


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_probe(request):
        # Probes and scrapes every few seconds: neither counted as traffic nor logged.
        response = await handler(request)
        response.headers[REQUEST_ID_HEADER] = request_id_for(request)
        return response
    clock = request.app[CLOCK]
    request_id = request_id_for(request)
    request[REQUEST_ID] = request_id
    started = clock.monotonic()
    CURRENT_CALL.set(UpstreamCall())
    try:
        check_header_size(request)
        response = await handler(request)
    except asyncio.CancelledError:
        # The client went away and its handler was stopped: logged as nginx does (499).
        log_access(request, request_id, CLIENT_CLOSED, clock.monotonic() - started)
        raise
    except GatewayError as exc:
        response = error_response(exc, request_id)
    except web.HTTPException as exc:
        # The router keeps its 404 or 405 in the request's match info, and the traceback
        # keeps the frames that hold the request: a cycle, left for the garbage collector
        # (gateway/runtime/heap.py).
        exc.__traceback__ = None
        response = error_response(_from_http_exception(exc), request_id)
    except Exception:
        log.exception("unhandled error, request_id=%s", request_id)
        response = error_response(InternalError(), request_id)
    if response.status >= 400:
        close_if_unread(request, response)
    response.headers[REQUEST_ID_HEADER] = request_id
    log_access(request, request_id, response.status, clock.monotonic() - started, response)
    return response


def answering_before_the_chain(
    handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """An application's request handler, with an HTTP error raised before its middlewares
    run answered as `gateway_middleware` answers one. aiohttp runs a route's expect handler
    ahead of the middlewares; its own (on an admin route, or on the router's 404 and 405)
    refuses an Expect other than 100-continue with a plain-text 417."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            exc.__traceback__ = None
            # The application's request factory makes web.Requests.
            routed = cast(web.Request, request)
            request_id = request_id_for(routed)
            response = error_response(_from_http_exception(exc), request_id)
            close_if_unread(routed, response)
            log_access(routed, request_id, response.status, 0.0, response)
            return response

    return handle


def check_header_size(request: web.Request) -> None:
    """Refuses oversized headers with our envelope, below aiohttp's own (plain-text) limits."""
    size = sum(len(name) + len(value) + 4 for name, value in request.raw_headers)
    if size > config_of(request).limits.max_header_bytes:
        raise HeadersTooLarge()


def log_access(
    request: web.Request,
    request_id: str,
    status: int,
    seconds: float,
    response: web.StreamResponse | None = None,
) -> None:
    """The request's access log line and its metrics: the one place a request is counted."""
    app, caller = request.get(APP_NAME, NONE), request.get(CALLER_NAME, NONE)
    route = request.get(ROUTE, OTHER)
    request.app[METRICS].observe_request(app, caller, route, request.method, status, seconds)
    call = CURRENT_CALL.get() or UpstreamCall()
    placement = config_of(request).placement
    logs.access(
        logs.AccessLine(
            request_id=request_id,
            caller=caller,
            app=app,
            method=request.method,
            route=route,
            status=status,
            # The encoded path only: a query string can carry an accessToken, and a decoded
            # path could carry a line break into the log.
            path=request.rel_url.raw_path,
            upstream_status=call.http_status,
            platform_status=call.platform_status,
            duration_ms=round(seconds * 1000, 1),
            upstream_ms=round(call.seconds * 1000, 1),
            bytes_in=request.content.total_bytes,
            bytes_out=_body_bytes(response),
            trace_id=trace_for(request).trace_id,
            # The socket's peer: the gateway trusts no X-Forwarded-For (nor does admission).
            remote=request.remote or "",
            user_agent=request.headers.get(hdrs.USER_AGENT, ""),
            worker=None if placement is None else placement.index,
        )
    )


def _body_bytes(response: web.StreamResponse | None) -> int:
    if isinstance(response, web.Response) and isinstance(response.body, bytes | bytearray):
        return len(response.body)
    if response is not None and response.content_length is not None:
        return response.content_length
    return 0
