"""Typed keys for what the web application holds; set in app.py, read by the handlers."""

from __future__ import annotations

from aiohttp import web

from gateway.config import Config, LiveConfig
from gateway.core.clock import Clock
from gateway.egress.ratelimits import CallerRates, InFlight
from gateway.egress.tokens import TokenCache
from gateway.egress.upstream import Upstream
from gateway.egress.waits import TradeWaits
from gateway.metrics import Metrics
from gateway.web.admin import Readiness

# The config the process started with: what its listeners and connections were built from.
CONFIG = web.AppKey("neu_config", Config)
# The config in force, swapped whole by a reload; a request reads it through config_of().
LIVE_CONFIG = web.AppKey("neu_live_config", LiveConfig)
METRICS = web.AppKey("neu_metrics", Metrics)
READINESS = web.AppKey("neu_readiness", Readiness)
# The embedded sandbox (its application and URL), once it listens: a reload tells it secrets.
EMBEDDED_SANDBOX = web.AppKey("neu_embedded_sandbox", list[tuple[web.Application, str]])
# Each app's callbacks.deliver_to, updated in place by a reload.
DELIVER_TO = web.AppKey("neu_deliver_to", dict[str, str | None])
CLOCK = web.AppKey("neu_clock", Clock)
UPSTREAM = web.AppKey("neu_upstream", Upstream)
TOKENS = web.AppKey("neu_tokens", TokenCache)
WAITS = web.AppKey("neu_waits", TradeWaits)
# Each rate-limited caller's token bucket in this process.
CALLER_RATES = web.AppKey("neu_caller_rates", CallerRates)
# Each caller's requests in flight in this process.
IN_FLIGHT = web.AppKey("neu_in_flight", InFlight)
# Where the platform-facing callbacks listener listens, once it does.
CALLBACKS_URL = web.AppKey("neu_callbacks_url", str)
# Each app's upstream base URL, the embedded sandbox's address filled in once it listens.
BASE_URLS = web.AppKey("neu_base_urls", dict[str, str])

# Per-request values, read by the access log.
REQUEST_ID = web.RequestKey("neu_request_id", str)
APP_NAME = web.RequestKey("neu_app", str)
CALLER_NAME = web.RequestKey("neu_caller", str)
ROUTE = web.RequestKey("neu_route", str)
_REQUEST_CONFIG = web.RequestKey("neu_request_config", Config)


def config_of(request: web.Request) -> Config:
    """The config this request started with: a reload while it runs does not change it."""
    config = request.get(_REQUEST_CONFIG)
    if config is None:
        config = request[_REQUEST_CONFIG] = request.app[LIVE_CONFIG].current
    return config
