"""The platform's refusals of the gateway's sign: an incident, not a caller's mistake.

The platform answers a wrong sign with HTTP 200 and a 401 in its envelope, so the access log
alone shows nothing wrong. Each refusal is counted (neu_gateway_sign_rejections_total{app});
a WARNING names the app at most once a minute per app, with how many refusals came since the
one before, so a wrong secret under load is loud without flooding the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway import logs
from gateway.config.model import App
from gateway.core.clock import Clock
from gateway.core.platform import is_sign_refusal
from gateway.metrics import Metrics
from gateway.upstream.transport import Answer

log = logs.logger("neu_gateway.upstream")

WARN_EVERY_S = 60.0


def sign_refused(answer: Answer) -> bool:
    """The platform refused the sign this answer was sent with."""
    # Nearly every answer is no 401: its status is read already; the full parse only then.
    if answer.status != 401 and answer.platform_status != 401:
        return False
    return is_sign_refusal(answer.status, answer.body)


@dataclass
class _Warned:
    at: float | None = None
    # Refusals since the last warning (or since the start, before the first).
    since: int = 0


class SignRefusals:
    """Counts each refusal and warns of an app's at most once every `every_s`."""

    def __init__(self, metrics: Metrics, clock: Clock, every_s: float = WARN_EVERY_S) -> None:
        self._metrics = metrics
        self._clock = clock
        self._every_s = every_s
        self._apps: dict[str, _Warned] = {}

    def refused(self, app: App, base_url: str) -> None:
        self._metrics.count_sign_rejection(app.name)
        warned = self._apps.get(app.name)
        if warned is None:
            warned = self._apps[app.name] = _Warned()
        warned.since += 1
        now = self._clock.monotonic()
        if warned.at is not None and now - warned.at < self._every_s:
            return
        log.warning(
            "app %s (appid %s, upstream %s): the platform refused the gateway's sign (%s): "
            "the secret for apps.%s is wrong or was rotated on the platform; every call of "
            "this app fails until it holds the platform's secret",
            app.name,
            app.appid,
            base_url,
            _tally(warned.since, None if warned.at is None else now - warned.at),
            app.name,
        )
        warned.at, warned.since = now, 0


def _tally(count: int, over_s: float | None) -> str:
    if over_s is None:
        return f"{count} refusal{'s' if count != 1 else ''} since this process started"
    return f"{count} refusal{'s' if count != 1 else ''} in the last {over_s:.0f} s"
