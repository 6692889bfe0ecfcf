"""The gateway's series (`Metrics`): their names, help and labels, what feeds each, and their
exposition, one registry per application (names fixed by docs/operating.md, "Metrics")."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector

from gateway import __version__
from gateway.metrics.calls import CURRENT_CALL
from gateway.metrics.labels import NONE, OTHER
from gateway.metrics.processes import WorkerProcesses
from gateway.metrics.tallies import Count, Durations, Tally

# A `_created` series beside every counter doubles the scrape for a value no one graphs.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Set by the supervisor for its workers, before they import prometheus-client.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# From what the gateway answers itself (0.2 to 2 ms: a refusal, a cached token) to a wait=60
# tradedetail: a lowest bucket of 5 ms held nearly every request the gateway answers alone.
BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)
DELIVERY_OUTCOMES = ("delivered", "failed", "dead")

Refresh = Callable[[], Awaitable[None]]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "neu_gateway_requests",
            "Requests answered on the egress listener, by the HTTP status the caller got.",
            ["app", "caller", "route", "method", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "neu_gateway_request_duration_seconds",
            "Time from a request's arrival to its answer.",
            ["app", "route"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.upstream_requests = Counter(
            "neu_gateway_upstream_requests",
            "Calls to the platform, by HTTP status and the envelope's responseHeader.status "
            "(the platform answers business errors with HTTP 200).",
            ["app", "route", "status", "platform_status"],
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "neu_gateway_upstream_duration_seconds",
            "Time the platform took to answer a call.",
            ["app", "route"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.requests_in_flight = Gauge(
            "neu_gateway_requests_in_flight",
            "Requests admitted and not yet answered on the egress listener, by caller (what "
            "max_in_flight bounds).",
            ["caller"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.connections = Gauge(
            "neu_gateway_connections",
            "Client connections open on each listener (egress, callbacks, admin, sandbox).",
            ["listener"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.backend_up = Gauge(
            "neu_gateway_backend_up",
            "Whether each shared backend answered its last check (/readyz or a scrape): 1 up, "
            "0 down. cache: the token cache's Redis; outbox: the callbacks outbox.",
            ["backend"],
            registry=registry,
            # The scraped process has just asked: its answer is the freshest.
            multiprocess_mode="livemostrecent",
        )
        self.token_cache = Counter(
            "neu_gateway_token_cache",
            "Token cache lookups and evictions: hit, miss, shared (an identical exchange in "
            "flight), evicted (a token the platform refused).",
            ["app", "result"],
            registry=registry,
        )
        self.token_cache_entries = Gauge(
            "neu_gateway_token_cache_entries",
            "Entries in the token cache (this replica's memory, or the shared Redis keys).",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.callbacks = Counter(
            "neu_gateway_callbacks",
            "Payment callbacks from the platform: accepted, or the error code they were "
            "refused with.",
            ["app", "outcome"],
            registry=registry,
        )
        self.outbox_deliveries = Gauge(
            "neu_gateway_outbox_deliveries",
            "Deliveries in the callbacks outbox, by state.",
            ["state"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.deliveries = Counter(
            "neu_gateway_deliveries",
            "Delivery attempts to the internal receivers: delivered, failed (to be retried), "
            "dead (out of attempts).",
            ["outcome"],
            registry=registry,
        )
        self.connections_evicted = Counter(
            "neu_gateway_connections_evicted",
            "Connections closed at limits.max_connections to make room for a new one, by what "
            "they were waiting on their client for (idle, headers, body, answer), and new ones "
            "refused with 503 there (refused).",
            ["waiting_on"],
            registry=registry,
        )
        self.config_reloads = Counter(
            "neu_gateway_config_reloads",
            "Config reloads (SIGHUP), by result.",
            ["result"],
            registry=registry,
        )
        self.config_loaded = Gauge(
            "neu_gateway_config_loaded_timestamp_seconds",
            "When the config in force was loaded (Unix time).",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.clock_offset = Gauge(
            "neu_gateway_clock_offset_seconds",
            "The platform's clock minus this host's, from its Date headers.",
            ["app"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.breaker_state = Gauge(
            "neu_gateway_breaker_state",
            "Each app's upstream breaker: 0 closed, 1 half-open (one probe), 2 open (calls "
            "answered 503 at once).",
            ["app"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.sign_rejections = Counter(
            "neu_gateway_sign_rejections",
            "Calls whose sign the platform refused, by app: its secret is wrong, or was rotated "
            "on the platform.",
            ["app"],
            registry=registry,
        )
        self.rate_limit_fallbacks = Counter(
            "neu_gateway_rate_limit_fallbacks",
            "Requests of a caller with a shared rate limit counted in this process instead, "
            "because the shared Redis did not answer (or was skipped for a second after it "
            "did not).",
            ["caller"],
            registry=registry,
        )
        build_info = Gauge(
            "neu_gateway_build_info",
            "The running version.",
            ["version"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        build_info.labels(__version__).set(1)
        # Series that exist from the start, so a dashboard or alert sees 0, not no data.
        for result in ("ok", "failed"):
            self.config_reloads.labels(result)
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(outcome)
        self._refreshers: list[Refresh] = []
        self._in_flight: dict[str, Gauge] = {}
        # This process's own; with several workers, each worker's is read at the scrape.
        ProcessCollector(registry=registry)
        # Tallies by label values: labels() takes a lock and builds a key each call.
        self._request_series: dict[tuple[str, ...], tuple[Count, Durations]] = {}
        self._upstream_series: dict[tuple[str, ...], tuple[Count, Durations]] = {}
        self._durations: dict[tuple[Histogram, str, str], Durations] = {}
        self._pending: list[Tally] = []

    def on_scrape(self, refresh: Refresh) -> None:
        """Runs `refresh` before each scrape, for gauges read from a backend (the outbox)."""
        self._refreshers.append(refresh)

    async def exposition(self) -> bytes:
        # At once: each may wait on a backend (a Redis that hangs), and one after another
        # their waits would add up to the scrape's.
        await asyncio.gather(*(refresh() for refresh in self._refreshers))
        self.flush()
        directory = os.environ.get(MULTIPROCESS_DIR_ENV)
        if directory:
            # A worker of several: every worker's figures, added up (or, for the gauges,
            # the latest or the worst), from the files prometheus-client keeps for each, and
            # each worker's process_* by its pid.
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(WorkerProcesses(Path(directory)))
            return generate_latest(registry)
        return generate_latest(self.registry)

    def count_sign_rejection(self, app: str) -> None:
        self.sign_rejections.labels(app).inc()

    def count_rate_limit_fallback(self, caller: str) -> None:
        self.rate_limit_fallbacks.labels(caller).inc()

    def count_token(self, app: str, result: str) -> None:
        self.token_cache.labels(app, result).inc()

    def connections_on(self, listener: str) -> Callable[[int], None]:
        """What a listener tells each connection it opens (+1) and closes (-1); its series
        shows 0 from now on."""
        child = self.connections.labels(listener)
        return child.inc

    def in_flight(self, caller: str, change: int) -> None:
        """A request of the caller's admitted (+1) or answered (-1). Counted as it happens,
        not read at the scrape: with several workers the scraped one cannot read the
        others'."""
        child = self._in_flight.get(caller)
        if child is None:
            child = self._in_flight[caller] = self.requests_in_flight.labels(caller)
        child.inc(change)

    def observe_upstream(
        self, app: str, route: str, status: str, platform_status: str, seconds: float
    ) -> None:
        """A call to the platform: `status` is its HTTP status (or timeout, unreachable,
        error), `platform_status` its envelope's responseHeader.status."""
        key = (app, route, status, platform_status)
        series = self._upstream_series.get(key)
        if series is None:
            series = self._upstream_series[key] = (
                Count(self.upstream_requests.labels(*key)),
                self._durations_of(self.upstream_duration, app, route),
            )
        self._add(series, seconds)
        call = CURRENT_CALL.get()
        if call is not None:
            call.http_status, call.platform_status = status, platform_status
            call.seconds += seconds

    def count_evicted(self, waiting_on: str) -> None:
        """A connection the listener closed at limits.max_connections to make room (or a new
        one it refused), by what it was waiting on: idle, headers, body, answer, refused."""
        self.connections_evicted.labels(waiting_on).inc()

    def count_refused(self, status: int) -> None:
        """A request the listener refused before any handler ran: its status is all that is
        known."""
        self.requests.labels(NONE, NONE, OTHER, OTHER, str(status)).inc()

    def observe_request(
        self, app: str, caller: str, route: str, method: str, status: int, seconds: float
    ) -> None:
        # The parser lets any of its ~40 known methods through; two are the platform's.
        method = method if method in ("GET", "POST", "HEAD") else OTHER
        key = (app, caller, route, method, str(status))
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = (
                Count(self.requests.labels(*key)),
                self._durations_of(self.request_duration, app, route),
            )
        self._add(series, seconds)

    def _durations_of(self, histogram: Histogram, app: str, route: str) -> Durations:
        # One tally per histogram series, shared by the count series that feed it.
        key = (histogram, app, route)
        durations = self._durations.get(key)
        if durations is None:
            durations = self._durations[key] = Durations(histogram.labels(app, route))
        return durations

    def _add(self, series: tuple[Count, Durations], seconds: float) -> None:
        count, durations = series
        count.add()
        durations.add(seconds)
        if count.pending and durations.pending:
            return
        pending = self._pending
        first = not pending
        for tally in series:
            if not tally.pending:
                tally.pending = True
                pending.append(tally)
        if first:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                # No event loop (a program calling this directly): nothing would flush later.
                self.flush()

    def flush(self) -> None:
        """Every tally to its series (at the end of each turn of the event loop, and before
        a scrape)."""
        pending, self._pending = self._pending, []
        for tally in pending:
            tally.pending = False
            tally.flush()
