"""Each upstream's clock against this host's, learnt from its answers' Date headers: the
time the gateway signs with once the two drift apart (see core.resilience.Skew)."""

from __future__ import annotations

import email.utils

from gateway import logs
from gateway.core.clock import Clock
from gateway.core.resilience import Skew
from gateway.metrics import Metrics

log = logs.logger("neu_gateway.upstream")


class Skews:
    """One Skew per upstream base URL; each app's offset shown as a gauge."""

    def __init__(self, max_skew_s: float, clock: Clock, metrics: Metrics) -> None:
        self._max_skew_s = max_skew_s
        self._clock = clock
        self._metrics = metrics
        self._skews: dict[str, Skew] = {}
        self._last_date: tuple[str | None, float | None] = (None, None)
        # Each app's clock offset as the metrics show it.
        self._offsets_shown: dict[str, float] = {}

    def skew(self, base_url: str) -> Skew:
        skew = self._skews.get(base_url)
        if skew is None:
            skew = self._skews[base_url] = Skew(self._max_skew_s)
        return skew

    def offset_s(self, base_url: str) -> float:
        """The platform's clock minus this host's, as last seen at `base_url`."""
        skew = self._skews.get(base_url)
        latest = None if skew is None else skew.latest_s
        return 0.0 if latest is None else latest

    def learn(self, base_url: str, app: str, sent_s: float, date: str | None) -> None:
        """The platform's Date header, against this host's clock when the call went out and
        came back."""
        if date == self._last_date[0]:
            # A busy platform sends the same Date for a whole second: parse it once.
            date_s = self._last_date[1]
        else:
            date_s = _date_s(date)
            self._last_date = (date, date_s)
        if date_s is None:
            return
        skew = self.skew(base_url)
        if skew.observe(sent_s, self._clock.now_ms() / 1000, date_s):
            self.log_correction(base_url, app, skew)
        if self._offsets_shown.get(app) != skew.offset_s:
            # Set on a change only: a gauge's labels and set cost a microsecond an answer.
            self._offsets_shown[app] = skew.offset_s
            self._metrics.clock_offset.labels(app).set(skew.offset_s)

    def log_correction(self, base_url: str, app: str, skew: Skew) -> None:
        if skew.correcting:
            log.warning(
                "this host's clock is %+.1f s off the platform's at %s (app %s): signing "
                "with the platform's time until it is back within clock.max_skew_s",
                -skew.offset_s,
                base_url,
                app,
            )
        else:
            log.warning("this host's clock agrees with the platform's at %s again", base_url)


def _date_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
