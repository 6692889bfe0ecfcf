"""The paths tests call, taken from the code that defines them (core.endpoints, the sandbox),
so a path is spelt in one place."""

from __future__ import annotations

from gateway.core import endpoints
from gateway.core.platform import API_PREFIX
from gateway.sandbox.openapi import ECHO_PATH as SANDBOX_ECHO

TOKEN = endpoints.ACCESS_TOKEN.path
USER_INFO = endpoints.USER_INFO.path
TRADE = endpoints.TRADE.path
DETAIL = endpoints.TRADE_DETAIL.path
CLOSE = endpoints.TRADE_CLOSE.path
NOTIFY = endpoints.SEND_NOTIFY.path
ACTIVITY = endpoints.SEND_ACTIVITY.path
# Paths the doc does not list: the gateway forwards them as they are (strict_endpoints off).
ECHO = API_PREFIX + "test/echo"
BENCH_ECHO = API_PREFIX + "bench/echo"
UPLOAD = API_PREFIX + "file/upload"

__all__ = [
    "ACTIVITY",
    "BENCH_ECHO",
    "CLOSE",
    "DETAIL",
    "ECHO",
    "NOTIFY",
    "SANDBOX_ECHO",
    "TOKEN",
    "TRADE",
    "UPLOAD",
    "USER_INFO",
]
