"""Typed keys for what the proxy handlers read from the gateway's application."""

from __future__ import annotations

from aiohttp import web

from gateway.egress.ratelimits import CallerRates, InFlight
from gateway.upstream.client import Upstream
from gateway.upstream.tokens import TokenCache
from gateway.upstream.waits import TradeWaits

UPSTREAM = web.AppKey("neu_upstream", Upstream)
TOKENS = web.AppKey("neu_tokens", TokenCache)
WAITS = web.AppKey("neu_waits", TradeWaits)
# Each rate-limited caller's token bucket in this process.
CALLER_RATES = web.AppKey("neu_caller_rates", CallerRates)
# Each caller's requests in flight in this process.
IN_FLIGHT = web.AppKey("neu_in_flight", InFlight)
# Each app's upstream base URL, the embedded sandbox's address filled in once it listens.
BASE_URLS = web.AppKey("neu_base_urls", dict[str, str])
