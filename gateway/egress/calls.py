"""Signed calls the gateway makes to the platform on its own behalf (not relaying a caller)."""

from __future__ import annotations

from urllib.parse import urlencode

from multidict import CIMultiDict
from yarl import URL

from gateway.config import App
from gateway.core.platform import TRADE_DETAIL_PATH, detail_of, signed_fields
from gateway.egress.upstream import Upstream, UpstreamResponse


def sign_for(app: App, fields: dict[str, str], now_ms: int) -> dict[str, str]:
    """The fields as the app sends them: with its appid, the timestamp and its sign."""
    return signed_fields(fields, app.appid, app.secret.reveal(), now_ms)


async def trade_detail(
    upstream: Upstream, base_url: str, app: App, trade_no: str, now_ms: int
) -> UpstreamResponse:
    query = urlencode(sign_for(app, {"tradeNo": trade_no}, now_ms))
    url = URL(f"{base_url}{TRADE_DETAIL_PATH}?{query}", encoded=True)
    return await upstream.request(
        "GET", url, headers=CIMultiDict(), app=app.name, route=TRADE_DETAIL_PATH
    )


def answer_detail(answer: UpstreamResponse) -> dict[str, object] | None:
    """The trade detail in a successful tradedetail answer, None otherwise."""
    return detail_of(answer.status, answer.body)
