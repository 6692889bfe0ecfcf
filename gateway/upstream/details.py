"""Signed calls the gateway makes to the platform on its own behalf (not relaying a caller)."""

from __future__ import annotations

from yarl import URL

from gateway.config.model import App
from gateway.core.params import form_encoded
from gateway.core.platform import TRADE_DETAIL_PATH, detail_of
from gateway.upstream.call import Call
from gateway.upstream.client import Upstream
from gateway.upstream.transport import Answer


async def trade_detail(upstream: Upstream, base_url: str, app: App, trade_no: str) -> Answer:
    def build(signed: dict[str, str]) -> tuple[URL, None]:
        return URL(f"{base_url}{TRADE_DETAIL_PATH}?{form_encoded(signed)}", encoded=True), None

    return await upstream.call(
        Call(
            app=app,
            base_url=base_url,
            method="GET",
            path=TRADE_DETAIL_PATH,
            fields={"tradeNo": trade_no},
            build=build,
        )
    )


def base_url_for(base_urls: dict[str, str], app: App) -> str:
    """Where the app's calls go: its own upstream (the one in the config the request started
    with, beside its secret), or the sandbox's address, known only once it listens."""
    return base_urls[app.name] if app.uses_sandbox else app.upstream


def answer_detail(answer: Answer) -> dict[str, object] | None:
    """The trade detail in a successful tradedetail answer, None otherwise."""
    return detail_of(answer.status, answer.body)
