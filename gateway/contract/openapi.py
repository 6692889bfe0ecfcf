"""The gateway's own interface as an OpenAPI 3.1 document, generated from the endpoint tables
(`core/endpoints.py`), the error tree (`core/errors.py`) and the gateway's headers, so the
description cannot drift from what the gateway checks.

What internal services call: each documented `/neuopenapi/` endpoint without `appid`,
`timestamp` and `sign` (the gateway adds them), its parameters as the gateway validates them,
the platform's envelope as the answer, and every error the gateway answers with itself. A
served document is built from the config in force (`Facts`), so it says what that gateway
checks: its apps, its limits, whether a caller needs a token. The parameters' schemas are
in fields.py, the answers' in answers.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway import __version__
from gateway.contract.answers import answer_schemas, error_responses, responses_of
from gateway.contract.fields import (
    FORM,
    JSON,
    MULTIPART,
    Bounds,
    Fields,
    body_schema,
    endpoint_fields,
)
from gateway.core.endpoints import ENDPOINTS, MAX_WAIT_S, Endpoint, Extra
from gateway.core.headers import (
    APP_HEADER,
    APP_NAME_PATTERN,
    CACHE_HEADER,
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    WAIT_HEADER,
)

OPENAPI_VERSION = "3.1.0"
DOCUMENT_PATH = "/openapi.json"


@dataclasses.dataclass(frozen=True)
class Facts:
    """What a served document says of the gateway serving it: taken from its config."""

    server_url: str = "http://127.0.0.1:8080"
    apps: tuple[str, ...] = ()
    # False when a caller on a trusted network, or anyone, may call without a token.
    token_required: bool = True
    # Its limits, and whether values are checked against the doc.
    bounds: Bounds = dataclasses.field(default_factory=Bounds)


def build_document(facts: Facts | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the gateway's interface, as JSON-ready data."""
    facts = facts or Facts()
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "neu-gateway",
            "version": __version__,
            "summary": "The SuperApp OpenAPI as internal services call it through neu-gateway.",
            "description": _INFO,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": facts.server_url, "description": "this gateway"}],
        "tags": [
            {"name": "oauth", "description": "Login codes, accessTokens and the user's profile."},
            {"name": "pay", "description": "Trades: create, read (or wait for), close."},
            {"name": "notify", "description": "Notifications to users."},
            {"name": "activity", "description": "Activity cards on the SuperApp home page."},
        ],
        "security": _security(facts),
        "paths": {endpoint.path: _path_item(endpoint, facts) for endpoint in ENDPOINTS.values()},
        "components": _components(facts),
    }


_INFO = (
    "Send the platform's parameters without `appid`, `timestamp` and `sign`: the gateway holds "
    "each app's secret, signs every call and forwards it. The answer is the platform's own "
    "envelope (`responseHeader.status`, `responseHeader.msg`, `response`), relayed as it came "
    "with the platform's HTTP status (200, also when `responseHeader.status` says otherwise). "
    "What the gateway refuses itself is answered in the same envelope with the HTTP status in "
    "`responseHeader.status` and a stable `error` code."
)

# -- operations ---------------------------------------------------------------------------------

_OPERATIONS: dict[str, tuple[str, str, str]] = {
    # path: (operationId, tag, summary)
    "/neuopenapi/oauth/mini/accessToken": (
        "accessToken",
        "oauth",
        "Exchange a login code for an accessToken (once per code; repeats get the cached answer)",
    ),
    "/neuopenapi/oauth/mini/user/info": (
        "userInfo",
        "oauth",
        "The user's profile, by accessToken or by openId (the cached accessToken put in)",
    ),
    "/neuopenapi/pay/transactions/trade": ("trade", "pay", "Create a trade"),
    "/neuopenapi/pay/transactions/tradedetail": (
        "tradeDetail",
        "pay",
        "A trade's detail; with wait=N, answered once it leaves processing",
    ),
    "/neuopenapi/pay/transactions/tradeclose": ("tradeClose", "pay", "Close a trade"),
    "/neuopenapi/notify/sendNotify": ("sendNotify", "notify", "Push a notification to users"),
    "/neuopenapi/activity/sendActivity": (
        "sendActivity",
        "activity",
        "Put an activity card on users' SuperApp home page",
    ),
}


def _path_item(endpoint: Endpoint, facts: Facts) -> dict[str, Any]:
    operation_id, tag, summary = _OPERATIONS[endpoint.path]
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "description": _operation_description(endpoint),
        "parameters": [{"$ref": "#/components/parameters/App"}, *_common_parameters()],
        "responses": responses_of(endpoint),
    }
    fields = endpoint_fields(endpoint, facts.bounds)
    if endpoint.method == "GET":
        operation["parameters"] += [
            {"name": name, "in": "query", "required": name in fields.required, "schema": schema}
            for name, schema in fields.text.items()
        ]
    else:
        operation["requestBody"] = _request_body(fields, facts.bounds)
    links = _LINKS.get(endpoint.path)
    if links:
        operation["responses"]["200"]["links"] = links
    return {endpoint.method.lower(): operation}


def _operation_description(endpoint: Endpoint) -> str:
    lines = []
    if endpoint.method == "GET":
        lines.append(
            "The parameters go in the query; the request line, with the headers, must fit in "
            "limits.max_header_bytes (else 431)."
        )
    if endpoint.method == "POST":
        lines.append(
            "The parameters go as a form, as JSON or as multipart/form-data, where file parts "
            "are forwarded byte for byte and never signed. In JSON a number stands for its "
            "literal text, and a whole one for a Long parameter for its whole text (100.0 is "
            "100). A list parameter (openIds) may repeat its key or be a JSON list; the others "
            "take one value."
        )
    if endpoint.extra is Extra.EXCHANGE:
        lines.append(
            "Each login code is exchanged once: the same code again gets the cached answer "
            f"(`{CACHE_HEADER}: hit`), and concurrent exchanges of one code share one call "
            f"(`{CACHE_HEADER}: shared`). The accessToken is kept until it expires, for "
            "`user/info` by `openId`."
        )
    if endpoint.extra is Extra.USER_BY_OPEN_ID:
        lines.append(
            "Send `accessToken`, or `openId` instead: the gateway puts in the accessToken it "
            "cached when that user's code was exchanged (401 `token_required` when it has none)."
        )
    if endpoint.extra is Extra.TRADE_WAIT:
        lines.append(
            f"With `wait=N` (1 to {MAX_WAIT_S} s), the answer comes once the trade leaves "
            f"processing, or after N seconds (`{WAIT_HEADER}: done` or `timeout`)."
        )
    return "\n\n".join(lines)


def _common_parameters() -> list[dict[str, Any]]:
    return [
        {"$ref": "#/components/parameters/RequestId"},
        {"$ref": "#/components/parameters/Traceparent"},
    ]


def _request_body(fields: Fields, bounds: Bounds) -> dict[str, Any]:
    return {
        "required": bool(fields.required),
        "content": {
            FORM: {"schema": body_schema(fields, bounds, FORM)},
            JSON: {"schema": body_schema(fields, bounds, JSON)},
            MULTIPART: {"schema": body_schema(fields, bounds, MULTIPART)},
        },
    }


# Values the next call takes from this answer: the mini app's story as OpenAPI links.
_LINKS: dict[str, dict[str, Any]] = {
    "/neuopenapi/oauth/mini/accessToken": {
        "UserInfoByAccessToken": {
            "operationId": "userInfo",
            "parameters": {"accessToken": "$response.body#/response/accessToken"},
            "description": "The profile of the user who logged in, with the new accessToken.",
        },
    },
    "/neuopenapi/oauth/mini/user/info": {
        "UserInfoByOpenId": {
            "operationId": "userInfo",
            "parameters": {"openId": "$response.body#/response/openId"},
            "description": "The same profile again by openId: the gateway puts its cached "
            "accessToken in.",
        },
    },
    "/neuopenapi/pay/transactions/trade": {
        "TradeDetail": {
            "operationId": "tradeDetail",
            "parameters": {"tradeNo": "$response.body#/response/tradeNo"},
            "description": "The new trade's detail.",
        },
        "TradeClose": {
            "operationId": "tradeClose",
            "requestBody": {"tradeNo": "$response.body#/response/tradeNo"},
            "description": "Close the new trade.",
        },
    },
    "/neuopenapi/pay/transactions/tradedetail": {
        "TradeCloseAfterDetail": {
            "operationId": "tradeClose",
            "requestBody": {"tradeNo": "$response.body#/response/tradeNo"},
            "description": "Close the trade just read.",
        },
    },
}


# -- components ---------------------------------------------------------------------------------


def _security(facts: Facts) -> list[dict[str, list[str]]]:
    # An empty requirement: a caller on a trusted network (or anyone, when allowed) needs none.
    return [{"callerToken": []}] if facts.token_required else [{"callerToken": []}, {}]


def _components(facts: Facts) -> dict[str, Any]:
    app_schema: dict[str, Any] = (
        {"type": "string", "enum": list(facts.apps)}
        if facts.apps
        else {"type": "string", "pattern": APP_NAME_PATTERN}
    )
    return {
        "securitySchemes": {
            "callerToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "The caller's token from `callers` in gateway.yaml.",
            }
        },
        "parameters": {
            "App": {
                "name": APP_HEADER,
                "in": "header",
                "required": False,
                "schema": app_schema,
                "description": (
                    "Which app to sign for: needed when several apps are configured and none "
                    "is `default_app`, and the caller may use more than one."
                ),
            },
            "RequestId": {
                "name": REQUEST_ID_HEADER,
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": (
                    "Your id for this request (letters, digits and `._:-`, up to 128); the "
                    "gateway makes one instead of one it cannot use."
                ),
            },
            "Traceparent": {
                "name": TRACEPARENT_HEADER,
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": (
                    "W3C Trace Context: passed on upstream and logged; a malformed one is "
                    "replaced by a trace the gateway starts, as the standard says."
                ),
            },
        },
        "headers": {
            "RequestId": {
                "required": True,
                "schema": {"type": "string"},
                "description": "The request's id: in the access log, and sent upstream.",
            },
            "Attempts": {
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
                "description": "How many times the gateway sent the call (when more than once).",
            },
            "SignRejected": {
                "schema": {"type": "string", "enum": ["1"]},
                "description": (
                    "The platform refused the gateway's sign: the secret configured for the app "
                    "is wrong, not your request."
                ),
            },
            "Cache": {
                "schema": {"type": "string", "enum": ["hit", "miss", "shared"]},
                "description": "Whether the answer came from the token cache.",
            },
            "Wait": {
                "schema": {"type": "string", "enum": ["done", "timeout"]},
                "description": "With wait=N: whether the trade left processing in time.",
            },
            "RetryAfter": {
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
                "description": "Seconds to wait before trying again.",
            },
        },
        "schemas": answer_schemas(),
        "responses": error_responses(),
    }
