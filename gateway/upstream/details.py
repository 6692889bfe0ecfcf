"""Signed calls the gateway makes to the platform on its own behalf (not relaying a caller)."""

from __future__ import annotations

from multidict import CIMultiDict
from yarl import URL

from gateway.config.model import App
from gateway.core.params import form_encoded
from gateway.core.platform import TRADE_DETAIL_PATH, detail_of
from gateway.upstream.client import Upstream, UpstreamResponse


async def trade_detail(
    upstream: Upstream, base_url: str, app: App, trade_no: str
) -> UpstreamResponse:
    def build(signed: dict[str, str]) -> tuple[URL, None]:
        return URL(f"{base_url}{TRADE_DETAIL_PATH}?{form_encoded(signed)}", encoded=True), None

    return await upstream.call(
        app, base_url, "GET", TRADE_DETAIL_PATH, {"tradeNo": trade_no}, build, CIMultiDict()
    )


def base_url_for(base_urls: dict[str, str], app: App) -> str:
    """Where the app's calls go: its own upstream (the one in the config the request started
    with, beside its secret), or the sandbox's address, known only once it listens."""
    return base_urls[app.name] if app.uses_sandbox else app.upstream


def answer_detail(answer: UpstreamResponse) -> dict[str, object] | None:
    """The trade detail in a successful tradedetail answer, None otherwise."""
    return detail_of(answer.status, answer.body)
