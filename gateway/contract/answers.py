"""What the gateway's interface answers, as OpenAPI responses and schemas: the platform's
envelope around each endpoint's result, and every error the gateway answers a caller with
itself, by status, from the error tree."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from gateway.contract.fields import JSON
from gateway.core import errors
from gateway.core.endpoints import Endpoint, Extra
from gateway.core.headers import (
    ATTEMPTS_HEADER,
    CACHE_HEADER,
    REQUEST_ID_HEADER,
    RETRY_AFTER,
    SIGN_REJECTED_HEADER,
    WAIT_HEADER,
)

# The ones that answer the platform on the callbacks listener, never an internal caller.
CALLBACK_ONLY = (
    errors.BadSign,
    errors.Replayed,
    errors.UnknownTrade,
    errors.ForeignTrade,
    errors.StatusMismatch,
    errors.NotFinal,
    errors.OutboxUnavailable,
    errors.ConfirmUnavailable,
    errors.NotReady,
)

_RESULTS = {
    "/neuopenapi/oauth/mini/accessToken": "AccessToken",
    "/neuopenapi/oauth/mini/user/info": "UserInfo",
    "/neuopenapi/pay/transactions/trade": "Trade",
    "/neuopenapi/pay/transactions/tradedetail": "TradeDetail",
}


def responses_of(endpoint: Endpoint) -> dict[str, Any]:
    result = _RESULTS.get(endpoint.path)
    success_headers: dict[str, Any] = {
        REQUEST_ID_HEADER: {"$ref": "#/components/headers/RequestId"},
        ATTEMPTS_HEADER: {"$ref": "#/components/headers/Attempts"},
        SIGN_REJECTED_HEADER: {"$ref": "#/components/headers/SignRejected"},
    }
    if endpoint.extra in (Extra.EXCHANGE, Extra.USER_BY_OPEN_ID):
        success_headers[CACHE_HEADER] = {"$ref": "#/components/headers/Cache"}
    if endpoint.extra is Extra.TRADE_WAIT:
        success_headers[WAIT_HEADER] = {"$ref": "#/components/headers/Wait"}
    responses: dict[str, Any] = {
        "200": {
            "description": (
                "The platform's answer, relayed as it came: `responseHeader.status` is the "
                "platform's verdict, and `response` its result (null when it refused)."
            ),
            "headers": success_headers,
            "content": {
                JSON: {"schema": {"$ref": f"#/components/schemas/{result or 'Platform'}Answer"}}
            },
        }
    }
    for status in CALLER_ERRORS:
        responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    return responses


def _caller_errors() -> dict[int, list[type[errors.GatewayError]]]:
    by_status: dict[int, list[type[errors.GatewayError]]] = defaultdict(list)
    for error in errors.every_error():
        if not issubclass(error, CALLBACK_ONLY):
            by_status[error.status].append(error)
    return dict(sorted(by_status.items()))


# Each HTTP status the gateway answers an internal caller with itself -> its errors, by status.
CALLER_ERRORS = _caller_errors()


def answer_schemas() -> dict[str, Any]:
    """The schemas the answers name: the envelope, each result, each status's refusal."""
    return {
        "ResponseHeader": _RESPONSE_HEADER,
        "PlatformAnswer": _answer({}),
        **{
            f"{name}Answer": _answer(
                {"anyOf": [{"type": "null"}, {"$ref": f"#/components/schemas/{name}"}]}
            )
            for name in _RESULT_SCHEMAS
        },
        **_RESULT_SCHEMAS,
        **{f"Error{status}": _error_schema(found) for status, found in CALLER_ERRORS.items()},
    }


def error_responses() -> dict[str, Any]:
    return {
        f"Error{status}": _error_response(status, found) for status, found in CALLER_ERRORS.items()
    }


_RESPONSE_HEADER: dict[str, Any] = {
    "type": "object",
    "required": ["status", "msg"],
    "properties": {
        "status": {"type": "integer", "description": "An HTTP status: 200 when all went well."},
        "msg": {"type": ["string", "null"]},
    },
}


def _answer(response: dict[str, Any]) -> dict[str, Any]:
    """The platform's envelope, around this `response`."""
    return {
        "type": "object",
        "required": ["responseHeader"],
        "properties": {
            "responseHeader": {"$ref": "#/components/schemas/ResponseHeader"},
            "response": response,
        },
    }


def _error_schema(found: list[type[errors.GatewayError]]) -> dict[str, Any]:
    """The envelope of the gateway's own refusal: no response, and a stable `error` code."""
    return {
        "type": "object",
        "required": ["responseHeader", "error"],
        "properties": {
            "responseHeader": {"$ref": "#/components/schemas/ResponseHeader"},
            "response": {"type": "null"},
            "error": {
                "type": "string",
                "enum": sorted({error.code for error in found}),
                "description": "A stable, machine-readable code.",
            },
        },
    }


def _error_response(status: int, found: list[type[errors.GatewayError]]) -> dict[str, Any]:
    headers: dict[str, Any] = {REQUEST_ID_HEADER: {"$ref": "#/components/headers/RequestId"}}
    if status in (429, 503):
        headers[RETRY_AFTER] = {"$ref": "#/components/headers/RetryAfter"}
    if status == 401:
        headers["WWW-Authenticate"] = {
            "schema": {"type": "string"},
            "description": "With `unauthenticated`: `Bearer`, the scheme a caller token goes in.",
        }
    if status == 405:
        headers["Allow"] = {
            "required": True,
            "schema": {"type": "string"},
            "description": "The methods the path takes.",
        }
    lines = [f"- `{error.code}`: {error.__doc__ or error.message}" for error in found]
    return {
        "description": "The gateway's own refusal:\n\n" + "\n".join(sorted(set(lines))),
        "headers": headers,
        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/Error{status}"}}},
    }


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


_RESULT_SCHEMAS: dict[str, Any] = {
    "AccessToken": {
        "type": "object",
        "properties": {
            "accessToken": {"type": "string", "description": "The user's accessToken (a JWT)."},
            "expire": {"type": "integer", "description": "Seconds until it expires."},
            "tokenType": {"type": "string", "examples": ["bearer"]},
            "openId": _nullable("string"),
        },
    },
    "UserInfo": {
        "type": "object",
        "properties": {
            name: _nullable("string")
            for name in ("openId", "nickName", "avatar", "email", "country", "phone", "unionId")
        },
    },
    "Trade": {
        "type": "object",
        "properties": {"outTradeNo": {"type": "string"}, "tradeNo": {"type": "string"}},
    },
    "TradeDetail": {
        "type": "object",
        "properties": {
            "tradeNo": {"type": "string"},
            "outTradeNo": {"type": "string"},
            "amount": {"type": "integer", "description": "In cents."},
            "currency": {"type": "string"},
            "openId": {"type": "string"},
            "transactionStatus": {
                "type": "integer",
                "description": (
                    "1 processing, 2 succeeded, 3 failed, 4 expired, 5 canceled, 6 closed."
                ),
            },
        },
    },
}
