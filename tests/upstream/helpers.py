"""Apps and requests as the platform client's tests need them, made through the config
loader as the gateway makes them."""

from __future__ import annotations

from typing import Any

from multidict import CIMultiDict
from yarl import URL

from gateway.config.model import App
from gateway.upstream.transport import Body, Request
from tests.conftest import gateway_config
from tests.support.platform_double import APPID


def app_for(upstream: str, **settings: Any) -> App:
    """The demo app calling `upstream`, with its tls or proxy settings."""
    demo = {"appid": APPID, "secret_env": "DEMO_SECRET", "upstream": upstream, **settings}
    return gateway_config(upstream, apps={"demo": demo}).apps["demo"]


def request_to(
    app: App,
    url: str,
    method: str = "GET",
    body: Body = None,
    timeout_s: float = 5.0,
    max_response_bytes: int = 1 << 20,
    headers: CIMultiDict[str] | None = None,
) -> Request:
    return Request(
        app,
        method,
        URL(url, encoded=True),
        CIMultiDict() if headers is None else headers,
        body,
        timeout_s,
        max_response_bytes,
    )
