"""Reading the platform's answers, and the fields of a signed request. Pure."""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.core import signing
from gateway.core.endpoints import TRADE_DETAIL

# Every OpenAPI path starts so; nothing else is ever sent upstream.
API_PREFIX = "/neuopenapi/"
# The endpoint the gateway calls on its own behalf (callbacks, trade waits).
TRADE_DETAIL_PATH = TRADE_DETAIL.path
# The doc's transactionStatus while a payment is under way; every other status is final.
PROCESSING = 1


def backoff_s(attempts: int, base_s: float, max_s: float, jitter: float = 1.0) -> float:
    """Retry delay after `attempts` tries: doubling from base_s, capped at max_s, times the
    jitter factor (1.0 for none; the caller draws it, so this stays pure)."""
    delay: float = min(base_s * 2 ** max(0, attempts - 1), max_s)
    return delay * jitter


def signed_fields(fields: dict[str, str], appid: str, secret: str, now_ms: int) -> dict[str, str]:
    """Fields plus the gateway's appid, timestamp and sign."""
    signed = {**fields, "appid": appid, "timestamp": str(now_ms)}
    signed["sign"] = signing.sign(signed, secret)
    return signed


def platform_status(body: bytes) -> tuple[int | None, Any]:
    """`responseHeader.status` and `response` of a platform answer, (None, None) if not one."""
    try:
        document = json.loads(body)
        status = document["responseHeader"]["status"]
    # RecursionError: json's scanner recurses once a level, and an answer may nest deeper.
    except (ValueError, TypeError, KeyError, RecursionError):
        return None, None
    return (status if isinstance(status, int) else None), document.get("response")


def detail_of(http_status: int, body: bytes) -> dict[str, Any] | None:
    """The trade detail in a successful tradedetail answer, None otherwise."""
    status, response = platform_status(body)
    ok = status == 200 and http_status == 200
    return response if ok and isinstance(response, dict) else None


# A word about the sign ("sign error", "Invalid signature", "SIGN_ERROR", "signError"), not a
# word that merely holds the letters ("design", "signal", "assigned", "signed").
_SIGN_WORD = re.compile(r"(?<![A-Za-z])(?i:sign(?:ature)?)(?![a-z])")
# An accessToken is a JWT, signed too: a refusal of its signature is about the token.
_TOKEN_WORD = re.compile(r"(?i:token)")
# Of a body that is not an envelope, the part read for a message.
_MAX_TEXT_BYTES = 1024


def is_timestamp_refusal(body: bytes) -> bool:
    """The platform refused the request for its timestamp (too far from its own clock)."""
    status, _ = platform_status(body)
    if status is None or status == 200:
        return False
    try:
        msg = json.loads(body)["responseHeader"].get("msg", "")
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return False
    if not isinstance(msg, str):
        return False
    at = msg.lower().find("timestamp")
    # A sign error that shows what was signed (the sandbox's `explain`) names the timestamp
    # parameter after the sign: it is about the sign.
    sign = _SIGN_WORD.search(msg)
    return at >= 0 and (sign is None or at < sign.start())


def refusal_message(body: bytes) -> str:
    """What a refusal says: the envelope's `responseHeader.msg`, or the start of a body that
    is not an envelope (a plain-text 401 from something in front of the platform)."""
    try:
        header = json.loads(body)["responseHeader"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return body[:_MAX_TEXT_BYTES].decode("utf-8", "replace")
    msg = header.get("msg") if isinstance(header, dict) else None
    return msg if isinstance(msg, str) else ""


def is_sign_refusal(http_status: int, body: bytes) -> bool:
    """The platform refused the request's sign: a 401 (on the wire, or in the envelope of an
    HTTP 200 as the platform answers business errors) whose message is about the sign, not
    about an accessToken. The doc fixes no wording; the sandbox says "sign error: ...".

    A message naming both is about the one it names first: a sign error that shows what was
    signed may list an accessToken parameter after it, and "accessToken signature invalid"
    is about the token."""
    if http_status != 401 and platform_status(body)[0] != 401:
        return False
    msg = refusal_message(body)
    sign = _SIGN_WORD.search(msg)
    if sign is None:
        return False
    token = _TOKEN_WORD.search(msg)
    return token is None or sign.start() < token.start()


# How the platform's answers begin; the status is read from here without parsing the rest.
_LEADING_STATUS = re.compile(
    rb'\A\s*\{\s*"responseHeader"\s*:\s*\{\s*"status"\s*:\s*(-?[0-9]{1,9})\s*[,}]'
)


def envelope_status(body: bytes) -> int | None:
    """`responseHeader.status` of a platform answer, None if it has none: for every answer's
    metrics and log line, so the usual shape is read without parsing the whole body."""
    match = _LEADING_STATUS.match(body)
    if match is not None:
        return int(match.group(1))
    return platform_status(body)[0]
