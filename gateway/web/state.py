"""Typed keys for what the web application holds; set in app.py, read by the handlers."""

from __future__ import annotations

from aiohttp import web

from gateway.config import Config
from gateway.core.clock import Clock
from gateway.egress.tokens import TokenCache
from gateway.egress.upstream import Upstream
from gateway.egress.waits import TradeWaits

CONFIG = web.AppKey("neu_config", Config)
CLOCK = web.AppKey("neu_clock", Clock)
UPSTREAM = web.AppKey("neu_upstream", Upstream)
TOKENS = web.AppKey("neu_tokens", TokenCache)
WAITS = web.AppKey("neu_waits", TradeWaits)
# Where the platform-facing callbacks listener listens, once it does.
CALLBACKS_URL = web.AppKey("neu_callbacks_url", str)
# Each app's upstream base URL, the embedded sandbox's address filled in once it listens.
BASE_URLS = web.AppKey("neu_base_urls", dict[str, str])

# Per-request values, read by the access log.
REQUEST_ID = web.RequestKey("neu_request_id", str)
APP_NAME = web.RequestKey("neu_app", str)
CALLER_NAME = web.RequestKey("neu_caller", str)
