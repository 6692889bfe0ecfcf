"""The platform client's policy over the transports: what is retried, when an app's upstream
is given a rest, and which clock a call is signed on.

`Upstream` picks a transport for each attempt (gateway.upstream.transport): the lean client
for a direct call with its body in memory, aiohttp's for a proxy or an upload. Whatever a
transport raises is already a gateway error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from aiohttp import MultipartWriter
from multidict import CIMultiDict
from yarl import URL

from gateway import logs
from gateway.config.model import App
from gateway.core.clock import Clock
from gateway.core.errors import (
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamTlsError,
    UpstreamUnavailable,
    UpstreamUnreachable,
)
from gateway.core.headers import ATTEMPTS_HEADER, RETRY_AFTER
from gateway.core.platform import backoff_s, is_timestamp_refusal
from gateway.core.resilience import Breaker, BreakerState, Permit
from gateway.metrics import NONE, OTHER, Metrics, route_label
from gateway.upstream.call import Call
from gateway.upstream.headers import end_to_end_headers
from gateway.upstream.refusals import SignRefusals, sign_refused
from gateway.upstream.sessions import Sessions
from gateway.upstream.skews import Skews
from gateway.upstream.transport import Answer, Request, Transport

log = logs.logger("neu_gateway.upstream")


@dataclass(frozen=True)
class CallPolicy:
    """How hard a call is tried, and when an app's upstream is given a rest."""

    attempts: int = 3
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    # Per endpoint path, instead of `attempts`.
    attempts_by_path: Mapping[str, int] = field(default_factory=dict)
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    max_skew_s: float = 30.0
    total_s: float = 15.0


# How many attempts an answer took, when more than one.
# Statuses that say "not now" rather than "no": a GET asked again may well succeed.
TRANSIENT = frozenset({502, 503, 504})
BREAKER_LEVELS = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class Upstream:
    """Calls the platform: signs each attempt afresh (on the platform's time when this
    host's clock has drifted), retries what is safe to retry, and stops calling an app's
    upstream for a while when it keeps failing."""

    def __init__(
        self,
        sessions: Sessions,
        max_response_bytes: int,
        metrics: Metrics,
        clock: Clock,
        policy: CallPolicy,
        report_sign_refusals: bool = True,
    ) -> None:
        """`report_sign_refusals`: count and warn of the platform's refusals of a sign (off for
        check-config --probe, which says so itself)."""
        self._sessions = sessions
        self._max_response_bytes = max_response_bytes
        self._metrics = metrics
        self._clock = clock
        self._policy = policy
        self._skews = Skews(policy.max_skew_s, clock, metrics)
        self._breakers: dict[str, Breaker] = {}
        self._refusals = SignRefusals(metrics, clock) if report_sign_refusals else None
        self._rng = random.Random()  # noqa: S311 - jitter, not security

    def renew_sessions(self) -> None:
        self._sessions.renew()

    def offset_s(self, base_url: str) -> float:
        """The platform's clock minus this host's, as last seen at `base_url`."""
        return self._skews.offset_s(base_url)

    async def call(self, call: Call) -> Answer:
        """The platform's answer to the call, signed as its app, sent to base_url + path."""
        app, base_url, method = call.app, call.base_url, call.method
        route = route_label(call.path)
        attempts = self._policy.attempts_by_path.get(call.path, self._policy.attempts)
        breaker = self._breaker(app.name)
        skew = self._skews.skew(base_url)
        deadline = self._clock.monotonic() + self._policy.total_s
        resynced = False
        attempt = 0
        while True:
            attempt += 1
            permit = breaker.allow(self._clock.monotonic())
            if permit is Permit.PROBE:
                self._metrics.breaker_state.labels(app.name).set(BREAKER_LEVELS[breaker.state])
            if permit is Permit.REFUSED:
                retry_after = max(1, round(breaker.retry_after_s(self._clock.monotonic())))
                raise UpstreamUnavailable(
                    f"the platform failed {self._policy.breaker_failures} times in a row for "
                    f"app {app.name}; calls are paused, retry in {retry_after} s",
                    headers={RETRY_AFTER: str(retry_after)},
                )
            request = call.request(
                skew.now_ms(self._clock.now_ms()),
                deadline - self._clock.monotonic(),
                self._max_response_bytes,
            )
            try:
                answer = await self._attempt(request, base_url, route)
            except (UpstreamTimeout, UpstreamUnreachable) as exc:
                self._failed(app.name, breaker)
                retryable = not isinstance(exc, UpstreamTlsError | UpstreamBadResponse) and (
                    method == "GET" or getattr(exc, "unsent", False)
                )
                if not retryable or not await self._pause(attempt, attempts, deadline):
                    if attempt > 1:
                        exc.headers[ATTEMPTS_HEADER] = str(attempt)
                    raise
                continue
            except BaseException:
                breaker.released(permit)
                raise
            if answer.status >= 500:
                self._failed(app.name, breaker)
            else:
                self._succeeded(app.name, breaker)
            status = answer.platform_status
            transient = answer.status in TRANSIENT or status in TRANSIENT
            if transient and method == "GET" and await self._pause(attempt, attempts, deadline):
                continue
            # The full parse only for a refusal, not for every answer.
            refused = status not in (None, 200)
            if not resynced and refused and is_timestamp_refusal(answer.body):
                resynced = True
                changed = skew.adopt()
                if skew.correcting:
                    # Refused for its timestamp, and the answer's Date says why: a refused
                    # request created nothing, so it goes once more, on the platform's time.
                    if changed:
                        self._skews.log_correction(base_url, app.name, skew)
                    log.warning("the platform refused a timestamp; sending again on its clock")
                    continue
            # Every answer of the platform passes here, the gateway's own calls included.
            if self._refusals is not None and sign_refused(answer):
                self._refusals.refused(app, base_url)
            return replace(answer, attempts=attempt) if attempt > 1 else answer

    async def _pause(self, attempt: int, attempts: int, deadline: float) -> bool:
        """Waits before the next attempt; False when there is none (attempts or time)."""
        if attempt >= attempts:
            return False
        pause = backoff_s(
            attempt, self._policy.backoff_s, self._policy.max_backoff_s, self._rng.random()
        )
        if self._clock.monotonic() + pause >= deadline:
            return False
        await self._clock.sleep(pause)
        return True

    def _breaker(self, app: str) -> Breaker:
        breaker = self._breakers.get(app)
        if breaker is None:
            breaker = self._breakers[app] = Breaker(
                self._policy.breaker_failures, self._policy.breaker_cooldown_s
            )
            self._metrics.breaker_state.labels(app).set(0)
        return breaker

    def _failed(self, app: str, breaker: Breaker) -> None:
        changed = breaker.failed(self._clock.monotonic())
        if changed is not None:
            log.warning(
                "app %s: %d upstream failures in a row; calls answered 503 for %g s",
                app,
                self._policy.breaker_failures,
                self._policy.breaker_cooldown_s,
            )
            self._metrics.breaker_state.labels(app).set(BREAKER_LEVELS[changed])

    def _succeeded(self, app: str, breaker: Breaker) -> None:
        changed = breaker.succeeded()
        if changed is not None:
            log.warning("app %s: the upstream answered again; calls go through", app)
            self._metrics.breaker_state.labels(app).set(BREAKER_LEVELS[changed])

    async def probe(self, app: App, base_url: str) -> Answer:
        """A cheap unsigned GET of the upstream's base URL: reachable, TLS, and its clock.
        Counted under the route `other`, as any path outside the doc."""
        request = Request(
            app,
            "GET",
            URL(base_url + "/"),
            CIMultiDict(),
            None,
            self._policy.total_s,
            self._max_response_bytes,
        )
        return await self._attempt(request, base_url, OTHER)

    async def _attempt(self, request: Request, base_url: str, route: str) -> Answer:
        """One exchange, counted under `route` (see metrics)."""
        started = time.monotonic()
        # No answer: what went wrong stands in for the HTTP status.
        http_status, platform = "error", NONE
        try:
            answer = await self._exchange(request, base_url)
        except UpstreamTimeout:
            http_status = "timeout"
            raise
        except UpstreamUnreachable:
            http_status = "unreachable"
            raise
        else:
            http_status = str(answer.status)
            status = answer.platform_status
            platform = NONE if status is None else str(status)
            return answer
        finally:
            self._metrics.observe_upstream(
                request.app.name, route, http_status, platform, time.monotonic() - started
            )

    async def _exchange(self, request: Request, base_url: str) -> Answer:
        """One call to the platform, read in full, its Date learnt and its headers those the
        caller may see."""
        sent_s = self._clock.now_ms() / 1000
        answer = await self._transport(request).send(request)
        self._skews.learn(base_url, request.app.name, sent_s, answer.headers.get("Date"))
        # The full URL holds the sign (and user/info's accessToken): the log's redaction
        # filter removes them; this line is only for debugging what was sent.
        log.debug("upstream %s %s answered %d", request.method, request.url, answer.status)
        return Answer(answer.status, end_to_end_headers(answer.headers), answer.body)

    def _transport(self, request: Request) -> Transport:
        # The lean client wherever it can go: a direct route, a body in memory.
        if request.app.proxy is None and not isinstance(request.body, MultipartWriter):
            return self._sessions.lean
        return self._sessions.aiohttp
