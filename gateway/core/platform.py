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
    except (ValueError, TypeError, KeyError):
        return None, None
    return (status if isinstance(status, int) else None), document.get("response")


def detail_of(http_status: int, body: bytes) -> dict[str, Any] | None:
    """The trade detail in a successful tradedetail answer, None otherwise."""
    status, response = platform_status(body)
    ok = status == 200 and http_status == 200
    return response if ok and isinstance(response, dict) else None


def is_timestamp_refusal(body: bytes) -> bool:
    """The platform refused the request for its timestamp (too far from its own clock)."""
    status, _ = platform_status(body)
    if status is None or status == 200:
        return False
    try:
        msg = json.loads(body)["responseHeader"].get("msg", "")
    except (ValueError, TypeError, KeyError, AttributeError):
        return False
    return isinstance(msg, str) and "timestamp" in msg.lower()


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
