"""The gateway's web application: its state, its routes, and the resources it owns."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.config.live import LiveConfig
from gateway.config.model import Config
from gateway.core.clock import Clock, SystemClock
from gateway.core.platform import API_PREFIX
from gateway.egress import proxy
from gateway.egress.keys import BASE_URLS, CALLER_RATES, IN_FLIGHT, WAITS
from gateway.egress.ratelimits import CallerRates, InFlight
from gateway.http.admin import Readiness, admin_routes
from gateway.http.api_docs import contract_routes
from gateway.http.dispatch import add_prefix_route
from gateway.http.keys import CLOCK, CONFIG, LIVE_CONFIG, METRICS, READINESS
from gateway.http.middlewares import gateway_middleware
from gateway.metrics import Metrics
from gateway.runtime import reload, resources
from gateway.runtime.keys import DELIVER_TO, EMBEDDED_SANDBOX
from gateway.runtime.listeners import connection_limits
from gateway.shared.rate_storage import SharedCounter
from gateway.upstream.waits import TradeWaits


def create_app(config: Config, clock: Clock | None = None) -> web.Application:
    app = web.Application(
        middlewares=[gateway_middleware],
        # Bodies are read by the handler with its own limit; this only guards request.read().
        client_max_size=config.limits.max_body_bytes,
        handler_args=connection_limits(config).handler_args(),
    )
    app[CONFIG] = config
    app[LIVE_CONFIG] = LiveConfig(config, time.time())
    app[CLOCK] = clock or SystemClock()
    metrics = app[METRICS] = Metrics()
    metrics.config_loaded.set(app[LIVE_CONFIG].loaded_at)
    app[READINESS] = Readiness(app[CLOCK])
    app[EMBEDDED_SANDBOX] = []
    # Where deliveries go, per app: updated in place by a reload.
    app[DELIVER_TO] = {name: entry.callbacks.deliver_to for name, entry in config.apps.items()}
    # Each app's upstream base URL; the embedded sandbox's address is filled in once it
    # listens, in this same mapping, so no resource depends on the order they start in.
    app[BASE_URLS] = {name: entry.upstream for name, entry in config.apps.items()}
    app.cleanup_ctx.append(resources.embedded_sandbox)
    app.cleanup_ctx.append(resources.upstream_client)
    app.cleanup_ctx.append(resources.token_cache)
    app.cleanup_ctx.append(resources.callbacks)
    app.cleanup_ctx.append(resources.admin_listener)
    app.cleanup_ctx.append(reload.watch_secret_files)
    app[WAITS] = TradeWaits(app[CLOCK])
    app[CALLER_RATES] = caller_rates(config, app[CLOCK], metrics)
    app.cleanup_ctx.append(_close_caller_rates)
    app[IN_FLIGHT] = InFlight(metrics.in_flight)
    # Ready once every resource above is open (cleanup contexts run before on_startup).
    app.on_startup.append(_started)
    if config.admin.listen is None:
        app.router.add_routes(admin_routes(app[READINESS], metrics))
        app.router.add_routes(contract_routes(lambda: app[LIVE_CONFIG].current, for_callers=True))
    add_prefix_route(app, API_PREFIX, proxy.forward, proxy.expect_body)
    return app


def caller_rates(config: Config, clock: Clock, metrics: Metrics) -> CallerRates:
    """The callers' rate counts; the shared ones in the cache's Redis, connected at the first
    request of a caller whose rate is shared (one may come with a reload)."""
    shared = SharedCounter(config.redis) if config.redis is not None else None
    for name, caller in config.callers.items():
        if caller.rate is not None and caller.rate.shared:
            # From the start, so an alert on a fallback sees 0 rather than no data.
            metrics.rate_limit_fallbacks.labels(name)
    return CallerRates(clock, shared, metrics.count_rate_limit_fallback)


async def _close_caller_rates(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[CALLER_RATES].close()


async def _started(app: web.Application) -> None:
    app[READINESS].started()
