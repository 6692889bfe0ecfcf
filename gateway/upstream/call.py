"""A call to the platform as the gateway is asked to make it: its fields unsigned, signed
afresh for each attempt (a new timestamp, on the platform's time when this host's clock has
drifted)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from multidict import CIMultiDict
from yarl import URL

from gateway.config.model import App
from gateway.core.platform import signed_fields
from gateway.upstream.transport import Body, Request

# The signed fields, into the request to send: its URL (a GET's query) and its body.
Build = Callable[[dict[str, str]], tuple[URL, Body]]


# Made per caller's request: not frozen, whose __init__ costs three times as much. (Each
# attempt's Request is frozen: it is what travels down through the transports.)
@dataclass(slots=True, kw_only=True)
class Call:
    app: App
    # Where the app's calls go (its upstream, or the embedded sandbox's address).
    base_url: str
    method: str
    # The endpoint's path under base_url, as the doc names it (the metrics' route).
    path: str
    # The caller's fields: no appid, timestamp or sign yet.
    fields: dict[str, str]
    build: Build
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)

    def request(self, now_ms: int, timeout_s: float, max_response_bytes: int) -> Request:
        """The attempt to send: the fields signed for `now_ms`, built into a URL and body."""
        url, body = self.build(sign_for(self.app, self.fields, now_ms))
        return Request(
            self.app, self.method, url, self.headers, body, timeout_s, max_response_bytes
        )


def sign_for(app: App, fields: dict[str, str], now_ms: int) -> dict[str, str]:
    """The fields as the app sends them: with its appid, the timestamp and its sign."""
    return signed_fields(fields, app.appid, app.secret.reveal(), now_ms)
