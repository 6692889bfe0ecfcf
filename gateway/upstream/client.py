"""The pooled client that talks to the platform, and the one place its errors are translated.

aiohttp's exceptions never leave this module: a timeout becomes UpstreamTimeout (504), a
refused, reset or dropped connection UpstreamUnreachable (502), an unreadable answer
UpstreamBadResponse (502).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import aiohttp
from aiohttp import hdrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway import logs
from gateway.config.model import App
from gateway.core.clock import Clock
from gateway.core.errors import (
    UpstreamBadResponse,
    UpstreamDnsError,
    UpstreamTimeout,
    UpstreamTlsError,
    UpstreamUnavailable,
    UpstreamUnreachable,
)
from gateway.core.params import is_unicode
from gateway.core.platform import (
    backoff_s,
    envelope_status,
    is_timestamp_refusal,
    signed_fields,
)
from gateway.core.resilience import Breaker, BreakerState, Permit, Skew
from gateway.core.sizes import READ_CHUNK_BYTES, gather_capped
from gateway.metrics import NONE, OTHER, Metrics, route_label
from gateway.upstream.lean import (
    ConnectionLost,
    Origins,
    bad_status,
    certificate_problem,
    decoded,
    is_chunked,
    request_head,
    ssl_reason,
    too_large,
)
from gateway.upstream.sessions import Sessions, TlsSetupError

log = logs.logger("neu_gateway.upstream")

# RFC 9110 section 7.6.1: these describe one connection, not the message, so never relay them.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# The body is relayed decoded and re-framed, so its old length and coding no longer apply.
REFRAMED = frozenset({"content-length", "content-encoding"})
_NOT_RELAYED = HOP_BY_HOP | REFRAMED
# The gateway's own headers: a caller sees only those the gateway set, never the platform's.
OWN_PREFIX = "x-neu-"
# Not allowed in a header value (RFC 9110 section 5.5), horizontal tab aside.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


# Made per call: not frozen, whose __init__ costs four times as much.
@dataclass
class UpstreamResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    # Attempts it took, when more than one (X-Neu-Attempts).
    attempts: int = 1

    @cached_property
    def platform_status(self) -> int | None:
        """`responseHeader.status`, read once for both the metrics and the retry decision."""
        return envelope_status(self.body)


def end_to_end_headers(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The headers worth relaying: no hop-by-hop ones, none named in Connection, none of the
    gateway's own (X-Neu-*)."""
    dropped = _NOT_RELAYED
    connection = headers.getall("Connection", None)
    if connection:
        named = {token.strip().lower() for value in connection for token in value.split(",")}
        if not named <= dropped:
            dropped = dropped | named
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in dropped or lowered.startswith(OWN_PREFIX):
            continue
        # A value whose bytes are not UTF-8 could not be written to the caller again.
        if (name.isascii() and value.isascii()) or (is_unicode(name) and is_unicode(value)):
            kept.add(name, value)
    return kept


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
    connect_s: float = 3.0


# The signed fields, into the request to send: its URL and body.
Build = Callable[[dict[str, str]], tuple[URL, Any]]
# How many attempts an answer took, when more than one.
ATTEMPTS_HEADER = "X-Neu-Attempts"
# Statuses that say "not now" rather than "no": a GET asked again may well succeed.
TRANSIENT = frozenset({502, 503, 504})


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
    ) -> None:
        self._sessions = sessions
        self._max_response_bytes = max_response_bytes
        self._metrics = metrics
        self._clock = clock
        self._policy = policy
        self._skews: dict[str, Skew] = {}
        self._breakers: dict[str, Breaker] = {}
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self._last_date: tuple[str | None, float | None] = (None, None)
        # Each app's clock offset as the metrics show it.
        self._offsets_shown: dict[str, float] = {}
        self._whole_time = self._timeout(policy.total_s)

    def _timeout(self, total_s: float) -> aiohttp.ClientTimeout:
        connect_s = min(self._policy.connect_s, total_s)
        return aiohttp.ClientTimeout(total=total_s, connect=connect_s, sock_connect=connect_s)

    def renew_sessions(self) -> None:
        self._sessions.renew()

    def offset_s(self, base_url: str) -> float:
        """The platform's clock minus this host's, as last seen at `base_url`."""
        skew = self._skews.get(base_url)
        latest = None if skew is None else skew.latest_s
        return 0.0 if latest is None else latest

    async def call(
        self,
        app: App,
        base_url: str,
        method: str,
        path: str,
        fields: dict[str, str],
        build: Build,
        headers: CIMultiDict[str],
    ) -> UpstreamResponse:
        """The platform's answer to `fields`, signed as `app`, sent to base_url + path."""
        route = route_label(path)
        attempts = self._policy.attempts_by_path.get(path, self._policy.attempts)
        breaker = self._breaker(app.name)
        skew = self._skew(base_url)
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
                    headers={"Retry-After": str(retry_after)},
                )
            signed = sign_for(app, fields, skew.now_ms(self._clock.now_ms()))
            url, data = build(signed)
            remaining = deadline - self._clock.monotonic()
            try:
                answer = await self._attempt(
                    app, base_url, method, url, headers, data, route, remaining
                )
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
                        self._log_correction(base_url, app.name, skew)
                    log.warning("the platform refused a timestamp; sending again on its clock")
                    continue
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

    def _skew(self, base_url: str) -> Skew:
        skew = self._skews.get(base_url)
        if skew is None:
            skew = self._skews[base_url] = Skew(self._policy.max_skew_s)
        return skew

    def learn_time(self, base_url: str, app: str, sent_s: float, date: str | None) -> None:
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
        skew = self._skew(base_url)
        if skew.observe(sent_s, self._clock.now_ms() / 1000, date_s):
            self._log_correction(base_url, app, skew)
        if self._offsets_shown.get(app) != skew.offset_s:
            # Set on a change only: a gauge's labels and set cost a microsecond an answer.
            self._offsets_shown[app] = skew.offset_s
            self._metrics.clock_offset.labels(app).set(skew.offset_s)

    def _log_correction(self, base_url: str, app: str, skew: Skew) -> None:
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

    async def probe(self, app: App, base_url: str) -> UpstreamResponse:
        """A cheap unsigned GET of the upstream's base URL: reachable, TLS, and its clock.
        Counted under the route `other`, as any path outside the doc."""
        url = URL(base_url + "/")
        return await self._attempt(
            app, base_url, "GET", url, CIMultiDict(), None, OTHER, self._policy.total_s
        )

    async def _attempt(
        self,
        app: App,
        base_url: str,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        data: Any,
        route: str,
        timeout_s: float,
    ) -> UpstreamResponse:
        """One exchange, counted under `route` (see metrics)."""
        started = time.monotonic()
        # No answer: what went wrong stands in for the HTTP status.
        http_status, platform = "error", NONE
        try:
            answer = await self._exchange(app, base_url, method, url, headers, data, timeout_s)
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
                app.name, route, http_status, platform, time.monotonic() - started
            )

    async def _exchange(
        self,
        app: App,
        base_url: str,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        data: Any,
        timeout_s: float,
    ) -> UpstreamResponse:
        """One call to the platform, read in full: through the lean client when the app
        calls its upstream directly with a body in memory, else (a proxy, an upload) through
        aiohttp's, whose errors are translated here."""
        try:
            route = self._sessions.route(app)
        except TlsSetupError as exc:
            raise _own_tls_failed(exc) from None
        sent_s = self._clock.now_ms() / 1000
        if route.direct is not None and (data is None or isinstance(data, bytes)):
            return await self._direct(
                route.direct, app, method, url, headers, data, timeout_s, sent_s, base_url
            )
        try:
            session = self._sessions.session(app)
        except TlsSetupError as exc:
            raise _own_tls_failed(exc) from None
        # A first attempt has the whole time (one object, made once); a retry what is left.
        timeout = (
            self._whole_time
            if timeout_s >= self._policy.total_s - 0.01
            else self._timeout(max(0.001, timeout_s))
        )
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                proxy=route.proxy,
                server_hostname=route.server_name,
                timeout=timeout,
            ) as response:
                self.learn_time(base_url, app.name, sent_s, response.headers.get("Date"))
                # What the lean client refuses as it parses, refused here alike.
                if not 100 <= response.status <= 599:
                    raise UpstreamBadResponse(bad_status(response.status))
                transfer = response.headers.getall(hdrs.TRANSFER_ENCODING, None)
                if transfer is not None:
                    # aiohttp undoes chunked alone: any other coding would be relayed as sent.
                    is_chunked(", ".join(transfer))
                if any(_CONTROL.search(value) for value in response.headers.values()):
                    # (aiohttp's parser lets them through, but for NUL; llhttp's does not.)
                    raise UpstreamBadResponse(
                        "the platform's answer has a control character in a header value"
                    )
                if response.status < 200:
                    # 101 Switching Protocols (or another 1xx) relayed would leave the caller
                    # waiting on a protocol the gateway does not speak.
                    raise UpstreamBadResponse(
                        f"the platform answered HTTP {response.status}, which cannot be relayed"
                    )
                body = await self._read_capped(response)
                # The full URL holds the sign (and user/info's accessToken): the log's redaction
                # filter removes them; this line is only for debugging what was sent.
                log.debug("upstream %s %s answered %d", method, url, response.status)
                return UpstreamResponse(response.status, end_to_end_headers(response.headers), body)
        except TimeoutError as exc:
            _log_failure(method, url, exc)
            raise UpstreamTimeout() from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            _log_failure(method, url, exc)
            raise UpstreamTlsError(certificate_problem(exc.certificate_error)) from exc
        except aiohttp.ClientConnectorDNSError as exc:
            _log_failure(method, url, exc)
            raise UpstreamDnsError(
                f"the platform's host name {url.host!r} could not be resolved (DNS)", unsent=True
            ) from exc
        except aiohttp.ClientSSLError as exc:
            _log_failure(method, url, exc)
            raise UpstreamTlsError(
                f"the TLS handshake with the platform failed ({ssl_reason(exc)})"
            ) from exc
        except aiohttp.ClientProxyConnectionError as exc:
            _log_failure(method, url, exc)
            raise UpstreamUnreachable(
                "the proxy could not be reached (check proxy)", unsent=True
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            _log_failure(method, url, exc)
            raise UpstreamUnreachable(unsent=True) from exc
        except aiohttp.ClientHttpProxyError as exc:
            _log_failure(method, url, exc)
            raise UpstreamUnreachable(
                f"the proxy refused the connection (HTTP {exc.status}); check proxy and its "
                "credentials",
                unsent=True,
            ) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            _log_failure(method, url, exc)
            raise UpstreamBadResponse() from exc
        except (aiohttp.ClientError, OSError) as exc:
            _log_failure(method, url, exc)
            raise _lost(app, url, exc) from exc

    async def _direct(
        self,
        origins: Origins,
        app: App,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: bytes | None,
        timeout_s: float,
        sent_s: float,
        base_url: str,
    ) -> UpstreamResponse:
        """One call through the lean client (a direct route, a body in memory)."""
        pool = origins.pool(url)
        head = request_head(method, url, pool.host_header, headers, body)
        try:
            answer = await pool.request(
                head, body, self._max_response_bytes, max(0.001, timeout_s), self._policy.connect_s
            )
        except TimeoutError as exc:
            _log_failure(method, url, exc)
            raise UpstreamTimeout() from exc
        except UpstreamUnreachable as exc:
            _log_failure(method, url, exc)
            raise
        except (ConnectionLost, OSError) as exc:
            _log_failure(method, url, exc)
            raise _lost(app, url, exc) from exc
        self.learn_time(base_url, app.name, sent_s, answer.headers.get("Date"))
        answer = decoded(answer, self._max_response_bytes)
        log.debug("upstream %s %s answered %d", method, url, answer.status)
        return UpstreamResponse(answer.status, end_to_end_headers(answer.headers), answer.body)

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        if (response.content_length or 0) > self._max_response_bytes:
            raise UpstreamBadResponse(too_large(self._max_response_bytes))
        if response.content_length is not None and hdrs.CONTENT_ENCODING not in response.headers:
            # Its size is known and allowed: one read, not a chunk loop. (A compressed body is
            # read in chunks: its decoded size is what the cap is for.)
            return await response.read()
        return await gather_capped(
            response.content.iter_chunked(READ_CHUNK_BYTES),
            self._max_response_bytes,
            lambda: UpstreamBadResponse(too_large(self._max_response_bytes)),
        )


def _own_tls_failed(exc: TlsSetupError) -> UpstreamTlsError:
    # A file that went bad after the start (or the last reload).
    return UpstreamTlsError(f"the gateway's own TLS setup failed: {exc}")


def _lost(app: App, url: URL, exc: BaseException) -> UpstreamUnreachable:
    """The error for a connection that ended without an answer."""
    # A connection that carried answers before had a good handshake, whatever ended it.
    reused = isinstance(exc, ConnectionLost) and exc.reused
    tls_error = _tls_error(exc)
    if tls_error is not None:
        reason = ssl_reason(tls_error)
        if not reused and "ALERT" in str(tls_error).upper():
            # The peer's alert on a first exchange is the handshake's verdict: TLS 1.3 tells
            # of a refused client certificate only once data flows.
            return UpstreamTlsError(f"the TLS handshake with the platform failed ({reason})")
        return UpstreamUnreachable(f"the TLS connection with the platform broke ({reason})")
    if url.scheme == "https" and app.tls.client_cert is None and not reused:
        # A server that wants a client certificate often just drops the connection
        # (the alert lost in a reset), so this is the likeliest reason to name.
        return UpstreamUnreachable(
            "the platform closed the connection without an answer; if it requires a "
            "client certificate (mutual TLS), set tls.client_cert and tls.client_key"
        )
    return UpstreamUnreachable()


BREAKER_LEVELS = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def _date_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _tls_error(exc: BaseException) -> BaseException | None:
    """The TLS error behind a failed read, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _log_failure(method: str, url: URL, exc: BaseException) -> None:
    # The query is left out: it holds the sign and, for user/info, an accessToken.
    log.warning("upstream %s %s failed: %s", method, url.with_query(None), type(exc).__name__)


def sign_for(app: App, fields: dict[str, str], now_ms: int) -> dict[str, str]:
    """The fields as the app sends them: with its appid, the timestamp and its sign."""
    return signed_fields(fields, app.appid, app.secret.reveal(), now_ms)


async def close_sessions(sessions: Sessions) -> None:
    await sessions.close()
    # Lets the connectors' SSL transports finish closing before the loop goes away.
    await asyncio.sleep(0)
