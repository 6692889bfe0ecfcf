"""Errors the gateway answers with itself, on either listener, each with a stable code, an
HTTP status and a clear message; and the one function that renders the platform's envelope.

GatewayError
├── BadRequest                 400 bad_request
│   ├── InvalidParams          400 invalid_params
│   ├── SecretParamRejected    400 secret_param_rejected
│   ├── InvalidJson            400 invalid_json
│   ├── JsonWithoutContentType 400 json_without_content_type
│   ├── InvalidMultipart       400 invalid_multipart
│   ├── InvalidPath            400 invalid_path
│   ├── ValidationFailed       400 validation_failed
│   └── AppRequired            400 app_required
├── Unauthenticated            401 unauthenticated
├── TokenRequired              401 token_required
├── BadSign                    401 bad_sign
├── Forbidden                  403 forbidden
├── ForeignTrade               403 foreign_trade
├── NotFound                   404 not_found
│   ├── UnknownApp             404 unknown_app
│   ├── UnknownEndpoint        404 unknown_endpoint
│   └── UnknownTrade           404 unknown_trade
├── MethodNotAllowed           405 method_not_allowed
├── RequestTimeout             408 request_timeout
│   ├── HeaderTimeout          408 header_timeout
│   └── BodyTimeout            408 body_timeout
├── Replayed                   409 replayed
├── StatusMismatch             409 status_mismatch
├── NotFinal                   409 not_final
├── BodyTooLarge               413 body_too_large
├── ExpectationFailed          417 expectation_failed
├── UnsupportedMediaType       415 unsupported_media_type
│   └── UnsupportedContentEncoding 415 unsupported_content_encoding
├── RateLimited                429 rate_limited
├── TooManyInFlight            429 too_many_in_flight
├── HeadersTooLarge            431 headers_too_large
├── InternalError              500 internal_error
├── CacheUnavailable           503 cache_unavailable
├── OutboxUnavailable          503 outbox_unavailable
├── ConfirmUnavailable         503 confirm_unavailable
├── TooManyConnections         503 too_many_connections
├── NotReady                   503 not_ready
├── UpstreamUnavailable        503 upstream_unavailable
├── UpstreamUnreachable        502 upstream_unreachable
│   ├── UpstreamBadResponse    502 upstream_bad_response
│   ├── UpstreamTlsError       502 upstream_tls_error
│   └── UpstreamDnsError       502 upstream_dns_error
├── UpstreamTimeout            504 upstream_timeout
└── VersionNotSupported        505 http_version_not_supported

The payment-callback ones (bad_sign, replayed, unknown_trade, foreign_trade, status_mismatch,
not_final, outbox_unavailable, confirm_unavailable) answer the platform on the callbacks
listener. A message may name what the caller sent (a parameter's name, a content type) so the
caller can act on it, but never a value: values can be credentials. Foreign exceptions are
translated into these at the edge where they happen; `envelope` renders every answer.

One job, over 400 lines: every error the gateway answers with, in one tree, so a code or a
status is never defined twice.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

MAX_NAME_IN_MESSAGE = 64


class GatewayError(Exception):
    """Base of every error the gateway answers with itself."""

    status: int = 500
    code: str = "gateway_error"
    message: ClassVar[str] = "the gateway could not handle the request"

    def __init__(self, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.msg = message or self.message
        self.headers = headers or {}
        super().__init__(self.msg)


class BadRequest(GatewayError):
    """The request is malformed."""

    status = 400
    code = "bad_request"
    message = "the request is malformed"


class InvalidParams(BadRequest):
    """A query string or form body cannot be decoded into parameters."""

    code = "invalid_params"
    message = "the request parameters cannot be decoded"


class SecretParamRejected(BadRequest):
    """The caller sent a `secret` parameter; the gateway owns the secret."""

    code = "secret_param_rejected"
    message = (
        "do not send 'secret': the gateway holds the app secret and signs for you; "
        "remove the parameter (and rotate that secret if it was a real one)"
    )


class InvalidJson(BadRequest):
    """A JSON body is not an object of scalars and lists of scalars."""

    code = "invalid_json"
    message = "the JSON body must be an object of scalars and lists of scalars"


class JsonWithoutContentType(BadRequest):
    """A JSON body sent as a form: `curl -d` labels its data application/x-www-form-urlencoded."""

    code = "json_without_content_type"
    message = (
        "the body looks like JSON but its Content-Type says it is a form "
        "(application/x-www-form-urlencoded, what curl -d sends unless told otherwise): "
        "add -H 'Content-Type: application/json'"
    )


class InvalidMultipart(BadRequest):
    """A multipart body cannot be parsed."""

    code = "invalid_multipart"
    message = "the multipart/form-data body is malformed"


class InvalidPath(BadRequest):
    """The request path is not a plain platform path."""

    code = "invalid_path"
    message = "the path must be a plain /neuopenapi/... path without encoded or dot segments"


class ValidationFailed(BadRequest):
    """The parameters break the endpoint's rules from the platform doc; all problems listed."""

    code = "validation_failed"
    message = "the parameters do not meet the endpoint's rules"


class AppRequired(BadRequest):
    """Several apps are configured, none is the default, and the caller named none."""

    code = "app_required"
    message = "several apps are configured and none is the default: send header X-Neu-App"


class Unauthenticated(GatewayError):
    """No caller token, or one the gateway does not know."""

    status = 401
    code = "unauthenticated"
    message = "missing or unknown caller token: send Authorization: Bearer <your caller token>"

    def __init__(self, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        # RFC 9110 section 11.6.1: a 401 names the scheme it wants.
        super().__init__(message, {"WWW-Authenticate": "Bearer", **(headers or {})})


class BadSign(GatewayError):
    """A payment callback's appid, timestamp or sign does not hold."""

    status = 401
    code = "bad_sign"
    message = "the callback's sign does not match"


class Forbidden(GatewayError):
    """The caller is known but may not use this app or route."""

    status = 403
    code = "forbidden"
    message = "this caller may not do that"


class TokenRequired(GatewayError):
    """No live accessToken is cached for the openId a caller named."""

    status = 401
    code = "token_required"
    message = (
        "no live accessToken is cached for this openId: exchange the user's login code at "
        "/neuopenapi/oauth/mini/accessToken first (or send accessToken yourself)"
    )


class CacheUnavailable(GatewayError):
    """The shared token cache (Redis) does not answer."""

    status = 503
    code = "cache_unavailable"
    message = (
        "the token cache is unavailable, so accessTokens cannot be found by openId; "
        "send accessToken yourself or retry shortly"
    )


class ForeignTrade(GatewayError):
    """The platform says a callback's trade belongs to another app."""

    status = 403
    code = "foreign_trade"
    message = "the trade belongs to another app"


class NotFound(GatewayError):
    """Nothing is served at this path."""

    status = 404
    code = "not_found"
    message = (
        "nothing here: the gateway serves /neuopenapi/..., its description at /openapi.json "
        "and /docs, and /healthz, /readyz and /metrics (all but /neuopenapi/ on a port of "
        "their own when admin.listen is set)"
    )


class UnknownApp(NotFound):
    """X-Neu-App names an app that is not configured."""

    code = "unknown_app"
    message = "unknown app in X-Neu-App"


class UnknownEndpoint(NotFound):
    """strict_endpoints is on and the path is not one of the platform's documented endpoints."""

    code = "unknown_endpoint"
    message = "not a documented platform endpoint, and strict_endpoints is on"


class UnknownTrade(NotFound):
    """The platform does not know a callback's trade."""

    code = "unknown_trade"
    message = "the platform does not know this trade"


class MethodNotAllowed(GatewayError):
    """The platform's OpenAPI is called with GET or POST only."""

    status = 405
    code = "method_not_allowed"
    message = "method not allowed: the platform's OpenAPI takes GET or POST"


class RequestTimeout(GatewayError):
    """The caller was too slow to send its request."""

    status = 408
    code = "request_timeout"
    message = "the request did not arrive in time"


class HeaderTimeout(RequestTimeout):
    """The request line and headers did not all arrive within limits.header_timeout_s."""

    code = "header_timeout"
    message = (
        "the request headers did not arrive within limits.header_timeout_s; "
        "the connection is closed"
    )


class BodyTimeout(RequestTimeout):
    """The request body stalled (limits.body_idle_timeout_s) or arrived too slowly
    (limits.min_body_rate_bytes_per_s)."""

    code = "body_timeout"
    message = (
        "the request body stalled: nothing arrived for limits.body_idle_timeout_s; "
        "the connection is closed"
    )


class Replayed(GatewayError):
    """A payment callback's sign was accepted before, within the replay window."""

    status = 409
    code = "replayed"
    message = "this sign was already used: a replay"


class StatusMismatch(GatewayError):
    """A callback claims a status the platform's tradedetail contradicts."""

    status = 409
    code = "status_mismatch"
    message = "the callback's status is not the one the platform gives"


class NotFinal(GatewayError):
    """The platform says the callback's trade is still processing."""

    status = 409
    code = "not_final"
    message = "the platform says the trade is still processing"


class BodyTooLarge(GatewayError):
    """The request body is larger than limits.max_body_bytes."""

    status = 413
    code = "body_too_large"
    message = "the request body is larger than the gateway accepts (limits.max_body_bytes)"


class ExpectationFailed(GatewayError):
    """An HTTP/1.1 Expect header other than 100-continue (RFC 9110 section 10.1.1)."""

    status = 417
    code = "expectation_failed"
    message = "the only Expect the gateway meets is 100-continue"


class UnsupportedMediaType(GatewayError):
    """The body's content type is not one the gateway can read parameters from."""

    status = 415
    code = "unsupported_media_type"
    message = (
        "unsupported Content-Type: send application/x-www-form-urlencoded, "
        "application/json or multipart/form-data"
    )


class UnsupportedContentEncoding(UnsupportedMediaType):
    """A compressed request body: inflating it could turn a few KB into gigabytes."""

    code = "unsupported_content_encoding"
    message = (
        "compressed request bodies are not accepted (Content-Encoding): send the body uncompressed"
    )


class RateLimited(GatewayError):
    """The caller sent more requests than its rate_limit allows."""

    status = 429
    code = "rate_limited"
    message = "this caller is over its rate limit"


class TooManyInFlight(GatewayError):
    """The caller already has as many requests in flight as its max_in_flight allows."""

    status = 429
    code = "too_many_in_flight"
    message = (
        "this caller has as many requests in flight as its max_in_flight allows; "
        "retry when one of them is answered"
    )


class HeadersTooLarge(GatewayError):
    """The request's headers are larger than limits.max_header_bytes."""

    status = 431
    code = "headers_too_large"
    message = "the request headers are larger than the gateway accepts (limits.max_header_bytes)"


class VersionNotSupported(GatewayError):
    """The request line names an HTTP version other than 1.1 and 1.0."""

    status = 505
    code = "http_version_not_supported"
    message = (
        "the gateway speaks HTTP/1.1 (and HTTP/1.0); send the request as HTTP/1.1 "
        "(HTTP/0.9, HTTP/2 and HTTP/3 are not served)"
    )


class InternalError(GatewayError):
    """A bug in the gateway; details are in its log under the request id."""

    status = 500
    code = "internal_error"
    message = "internal gateway error; the gateway log has details under this request id"


class OutboxUnavailable(GatewayError):
    """The outbox could not store a verified callback, so it is not acknowledged."""

    status = 503
    code = "outbox_unavailable"
    message = "not stored; send it again later"


class ConfirmUnavailable(GatewayError):
    """The platform could not be asked to confirm a callback; the platform will send it again."""

    status = 503
    code = "confirm_unavailable"
    message = "could not confirm with the platform"


class NotReady(GatewayError):
    """/readyz: the gateway is draining, or a backend it needs is down."""

    status = 503
    code = "not_ready"
    message = "not ready"


class TooManyConnections(GatewayError):
    """The listener already holds limits.max_connections connections."""

    status = 503
    code = "too_many_connections"
    message = (
        "the gateway holds as many connections as limits.max_connections allows; "
        "retry shortly or reuse a kept-alive connection"
    )


class UpstreamUnavailable(GatewayError):
    """The app's upstream failed too often in a row: calls are refused at once for a while."""

    status = 503
    code = "upstream_unavailable"
    message = "the platform is failing; calls are paused for breaker.cooldown_s"


class UpstreamUnreachable(GatewayError):
    """The upstream refused or dropped the connection."""

    status = 502
    code = "upstream_unreachable"
    message = "the platform could not be reached (connection refused, reset or closed)"

    def __init__(
        self,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        unsent: bool = False,
    ) -> None:
        super().__init__(message, headers)
        # No byte of the request left: even a POST may be sent again.
        self.unsent = unsent


class UpstreamBadResponse(UpstreamUnreachable):
    """The upstream answered with something the gateway cannot pass back."""

    code = "upstream_bad_response"
    message = "the platform's response could not be read"


class UpstreamTlsError(UpstreamUnreachable):
    """The TLS handshake with the upstream failed: its certificate, or ours."""

    code = "upstream_tls_error"
    message = "the TLS handshake with the platform failed"


class UpstreamDnsError(UpstreamUnreachable):
    """The upstream's host name did not resolve."""

    code = "upstream_dns_error"
    message = "the platform's host name could not be resolved (DNS)"


class UpstreamTimeout(GatewayError):
    """The upstream did not answer within the configured timeouts."""

    status = 504
    code = "upstream_timeout"
    message = "the platform did not answer in time (timeouts.connect_s / timeouts.total_s)"


def every_error(base: type[GatewayError] = GatewayError) -> list[type[GatewayError]]:
    """Every error below `base` in the tree, depth first, in the order they are defined."""
    found: list[type[GatewayError]] = []
    for sub in base.__subclasses__():
        found += [sub, *every_error(sub)]
    return found


def quoted_name(name: str) -> str:
    """A caller-supplied name made safe to put in a message: printable and short."""
    printable = "".join(ch if ch.isprintable() else "?" for ch in name)
    if len(printable) > MAX_NAME_IN_MESSAGE:
        printable = printable[:MAX_NAME_IN_MESSAGE] + "…"
    return repr(printable)


def envelope(
    status: int, msg: str, code: str | None = None, response: Any = None
) -> dict[str, Any]:
    """The platform's response shape, so callers parse one shape for every answer.

    The gateway's own errors add their machine-readable `error` code; the sandbox, which
    answers as the platform does, gives none.
    """
    shape: dict[str, Any] = {"responseHeader": {"status": status, "msg": msg}, "response": response}
    if code is not None:
        shape["error"] = code
    return shape


def render(error: GatewayError) -> bytes:
    """The error's envelope as the JSON bytes of an answer."""
    return json.dumps(envelope(error.status, error.msg, error.code), ensure_ascii=False).encode()
