"""Signed calls the gateway makes to the platform on its own behalf (not relaying a caller)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from multidict import CIMultiDict
from yarl import URL

from gateway import signing
from gateway.config import App
from gateway.upstream import Upstream, UpstreamResponse

TRADE_DETAIL_PATH = "/neuopenapi/pay/transactions/tradedetail"


def signed_fields(fields: dict[str, str], app: App, now_ms: int) -> dict[str, str]:
    """Fields plus the gateway's appid, timestamp and sign."""
    signed = {**fields, "appid": app.appid, "timestamp": str(now_ms)}
    signed["sign"] = signing.sign(signed, app.secret.reveal())
    return signed


async def trade_detail(
    upstream: Upstream, base_url: str, app: App, trade_no: str, now_ms: int
) -> UpstreamResponse:
    query = urlencode(signed_fields({"tradeNo": trade_no}, app, now_ms))
    url = URL(f"{base_url}{TRADE_DETAIL_PATH}?{query}", encoded=True)
    return await upstream.request("GET", url, headers=CIMultiDict())


def platform_status(body: bytes) -> tuple[int | None, Any]:
    """`responseHeader.status` and `response` of a platform answer, (None, None) if not one."""
    try:
        document = json.loads(body)
        status = document["responseHeader"]["status"]
    except (ValueError, TypeError, KeyError):
        return None, None
    return (status if isinstance(status, int) else None), document.get("response")


def detail_of(answer: UpstreamResponse) -> dict[str, Any] | None:
    """The trade detail in a successful tradedetail answer, None otherwise."""
    status, response = platform_status(answer.body)
    ok = status == 200 and answer.status == 200
    return response if ok and isinstance(response, dict) else None
