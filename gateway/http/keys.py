"""Typed keys for what every listener's application holds, and the per-request values the
access log reads; set when the app is built, read by the middlewares and handlers."""

from __future__ import annotations

from aiohttp import web

from gateway.config.live import LiveConfig
from gateway.config.model import Config
from gateway.core.clock import Clock
from gateway.http.admin import Readiness
from gateway.metrics import Metrics

# The config the process started with: what its listeners and connections were built from.
CONFIG = web.AppKey("neu_config", Config)
# The config in force, swapped whole by a reload; a request reads it through config_of().
LIVE_CONFIG = web.AppKey("neu_live_config", LiveConfig)
METRICS = web.AppKey("neu_metrics", Metrics)
READINESS = web.AppKey("neu_readiness", Readiness)
CLOCK = web.AppKey("neu_clock", Clock)

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
