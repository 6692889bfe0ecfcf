"""What the gateway's application owns for as long as it runs, each opened and closed in one
cleanup context: the embedded sandbox, the upstream client, the token cache, the callbacks
listener with its outbox and delivery worker, and the admin listener.

A resource that cannot be opened stops the start: a CannotStart, or the StartError of a
listener, each naming its config key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import logs
from gateway.callbacks.delivery import DeliveryPolicy, DeliveryWorker, Destination
from gateway.callbacks.listener import CallbackContext, create_callbacks_app
from gateway.callbacks.outbox import Outbox, OutboxError, RedisOutbox, SqliteOutbox, sqlite_path
from gateway.config.model import App, Config
from gateway.config.schema import SQLITE_STORE
from gateway.core.clock import Clock
from gateway.core.errors import GatewayError
from gateway.egress.keys import BASE_URLS, TOKENS, UPSTREAM, WAITS
from gateway.http.admin import Check, admin_routes
from gateway.http.api_docs import contract_routes
from gateway.http.keys import CLOCK, CONFIG, LIVE_CONFIG, METRICS, READINESS
from gateway.http.server import GuardedRunner
from gateway.runtime.keys import CALLBACKS_URL, DELIVER_TO, EMBEDDED_SANDBOX
from gateway.runtime.listeners import (
    ADMIN,
    CALLBACKS,
    SANDBOX,
    SIDE_SHUTDOWN_S,
    CannotStart,
    StartError,
    connection_limits,
    sandbox_runner,
    start_listener,
)
from gateway.sandbox.server import create_sandbox_app, set_signing_secrets
from gateway.sandbox.world import Settings
from gateway.upstream.client import CallPolicy, Upstream
from gateway.upstream.sessions import Sessions
from gateway.upstream.stores import MemoryStore, RedisStore
from gateway.upstream.tls import TlsSetupError
from gateway.upstream.tokens import Store, StoreError, TokenCache

log = logs.logger("neu_gateway")


async def embedded_sandbox(app: web.Application) -> AsyncIterator[None]:
    """Starts the sandbox on its own listener when an app's upstream is `sandbox`."""
    config = app[CONFIG]
    if not config.sandbox_apps:
        yield
        return
    placement = config.placement
    if placement is not None and placement.sandbox_url is not None:
        # A worker: the supervisor runs the one sandbox all workers share.
        app[BASE_URLS].update({entry.name: placement.sandbox_url for entry in config.sandbox_apps})
        yield
        return
    if placement is not None:
        raise CannotStart("sandbox.listen: a worker's supervisor runs no sandbox for it")
    sandbox = sandbox_app(config, app[CLOCK])
    runner = sandbox_runner(
        sandbox, config.limits, on_connections=app[METRICS].connections_on(SANDBOX)
    )
    url = await start_listener(runner, config.sandbox.listen, "sandbox.listen")
    log.info(
        "sandbox listening on %s (apps: %s)", url, ", ".join(a.name for a in config.sandbox_apps)
    )
    # In place: whoever holds the mapping (the callbacks listener) sees the address.
    app[BASE_URLS].update({entry.name: url for entry in config.sandbox_apps})
    app[EMBEDDED_SANDBOX].append((sandbox, url))
    yield
    await runner.cleanup()


def sandbox_app(config: Config, clock: Clock | None = None) -> web.Application:
    """The sandbox for the config's sandbox apps: their secrets, and its stand-in service
    their signing secrets."""
    sandbox = create_sandbox_app(
        {entry.appid: entry.secret.reveal() for entry in config.sandbox_apps},
        sandbox_settings(config),
        clock,
    )
    set_signing_secrets(sandbox, sandbox_signing_secrets(config))
    return sandbox


def sandbox_signing_secrets(config: Config) -> list[str]:
    """What the sandbox's stand-in service verifies deliveries with: the signing secrets of
    the apps it plays the platform for (never another app's)."""
    return [secret.reveal() for entry in config.sandbox_apps for secret in entry.signing_secrets]


def sandbox_settings(config: Config) -> Settings:
    sandbox = config.sandbox
    return Settings(
        token_expire_s=sandbox.token_expire_s,
        code_ttl_s=sandbox.code_ttl_s,
        notify_attempts=sandbox.notify_attempts,
        notify_backoff_s=sandbox.notify_backoff_s,
        explain=sandbox.explain,
        clock_offset_s=sandbox.clock_offset_s,
        allowed_backend_hosts=frozenset(sandbox.allowed_backend_hosts),
    )


async def upstream_client(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    problems = tls_setup_problems(config)
    if problems:
        raise CannotStart("; ".join(problems))
    sessions = Sessions(config.pool, config.timeouts.connect_s, config.timeouts.total_s)
    upstream = app[UPSTREAM] = Upstream(
        sessions, config.limits.max_response_bytes, app[METRICS], app[CLOCK], call_policy(config)
    )
    closing = False

    async def sessions_open() -> None:
        if closing:
            raise RuntimeError("the upstream sessions are closed")

    app[READINESS].add_check("upstream", sessions_open)
    for entry in config.apps.values():
        # From the start, so an alert on a wrong secret sees 0 rather than no data.
        app[METRICS].sign_rejections.labels(entry.name)
    # Each upstream's clock, learnt before the first call needs it; a failure is only logged.
    probes = [
        asyncio.ensure_future(_learn_clock(upstream, entry, app[BASE_URLS]))
        for entry in config.apps.values()
    ]
    yield
    closing = True
    for probe in probes:
        probe.cancel()
    await asyncio.gather(*probes, return_exceptions=True)
    await sessions.close()


async def _learn_clock(upstream: Upstream, entry: App, base_urls: dict[str, str]) -> None:
    try:
        await upstream.probe(entry, base_urls[entry.name])
    except GatewayError as exc:
        log.warning("app %s: probing %s failed: %s", entry.name, entry.upstream, exc.msg)


def call_policy(config: Config) -> CallPolicy:
    retries, breaker = config.retries, config.breaker
    return CallPolicy(
        attempts=retries.attempts,
        backoff_s=retries.backoff_s,
        max_backoff_s=retries.max_backoff_s,
        attempts_by_path={path: rule.attempts for path, rule in retries.endpoints.items()},
        breaker_failures=breaker.failures,
        breaker_cooldown_s=breaker.cooldown_s,
        max_skew_s=config.clock.max_skew_s,
        total_s=config.timeouts.total_s,
    )


def tls_setup_problems(config: Config) -> list[str]:
    """What is wrong with the TLS files the config names (readable, a CA, a key that fits
    its certificate), as the start, check-config and a reload report it."""
    problems = []
    for entry in config.apps.values():
        try:
            Sessions.check_tls(entry)
        except TlsSetupError as exc:
            problems.append(str(exc))
    return sorted(set(problems))


async def token_cache(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    cache = config.cache
    store: Store
    if config.redis is not None:
        store = RedisStore(config.redis)
        log.info("token cache: %s, keys under %r", config.redis.where, cache.key_prefix)
    else:
        store = MemoryStore(cache.max_entries, app[CLOCK])
    metrics = app[METRICS]
    tokens = app[TOKENS] = TokenCache(
        store, app[CLOCK], cache.safety_margin_s, config.timeouts.total_s, metrics.count_token
    )
    if store.shared:
        # Shared by the replicas: reported (and exported), 503 only if required.
        watch_backend(app, "cache", store.ping)
    else:
        # This process's own memory: nothing shared to watch, nothing that can be down.
        app[READINESS].add_check("cache", store.ping)

    async def count_entries() -> None:
        # Down: the cache check on /readyz says so; the gauge keeps its last value.
        with contextlib.suppress(StoreError):
            metrics.token_cache_entries.set(await tokens.entries())

    metrics.on_scrape(count_entries)
    yield
    await store.close()


def watch_backend(app: web.Application, name: str, check: Check) -> None:
    """A shared backend (schema.READY_BACKENDS): checked by /readyz, unready for it only when
    admin.ready_requires names it, and its state in neu_gateway_backend_up, asked anew on
    every /readyz and every scrape."""
    readiness, metrics = app[READINESS], app[METRICS]
    up = metrics.backend_up.labels(name)
    readiness.add_check(
        name,
        check,
        required=name in app[CONFIG].admin.ready_requires,
        on_outcome=lambda usable: up.set(1 if usable else 0),
    )

    async def refresh() -> None:
        await readiness.state(name)

    metrics.on_scrape(refresh)


def open_outbox(config: Config, clock: Clock | None = None) -> Outbox:
    """The outbox callbacks.store names (raises OutboxError if it cannot be opened)."""
    if config.callbacks.store == "redis":
        if config.redis is None:
            # The loader refuses a redis store without cache.backend redis; this says so
            # should that change.
            raise OutboxError("the redis store needs cache.backend: redis")
        return RedisOutbox(config.redis)
    return SqliteOutbox(sqlite_path(config.callbacks.store or SQLITE_STORE), clock)


async def callbacks(app: web.Application) -> AsyncIterator[None]:
    """The listener facing the platform and the delivery worker, when callbacks.listen is set."""
    config = app[CONFIG]
    listen = config.callbacks.listen
    if listen is None:
        yield
        return
    try:
        outbox = open_outbox(config, app[CLOCK])
    except OutboxError as exc:
        raise CannotStart(
            f"callbacks.store: cannot open {config.callbacks.store} ({exc})"
        ) from None
    metrics = app[METRICS]
    policy = DeliveryPolicy(
        max_attempts=config.callbacks.max_attempts,
        backoff_s=config.callbacks.backoff_s,
        max_backoff_s=config.callbacks.max_backoff_s,
        timeout_s=config.callbacks.timeout_s,
    )
    targets: dict[str, Destination] = app[DELIVER_TO]
    worker = DeliveryWorker(
        outbox,
        targets,
        policy,
        app[CLOCK],
        lambda outcome: metrics.deliveries.labels(outcome).inc(),
    )
    worker.start()
    context = CallbackContext(
        app[LIVE_CONFIG],
        app[BASE_URLS],
        app[UPSTREAM],
        outbox,
        worker,
        app[WAITS],
        app[CLOCK],
        metrics,
    )
    watch_backend(app, "outbox", outbox.check_writable)

    async def count_deliveries() -> None:
        try:
            counts = await outbox.counts()
        except OutboxError:
            return  # the outbox check on /readyz says so
        for state, count in counts.items():
            metrics.outbox_deliveries.labels(state).set(count)

    metrics.on_scrape(count_deliveries)
    guard = connection_limits(config)
    runner = GuardedRunner(
        create_callbacks_app(context, guard.handler_args()),
        guard,
        # Stopped after the callers' listener, within the same overall deadline.
        shutdown_timeout=config.shutdown.timeout_s / 2,
        on_connections=metrics.connections_on(CALLBACKS),
    )
    try:
        url = await start_listener(runner, listen, "callbacks.listen", _shared(config))
    except StartError:
        await worker.stop()
        await outbox.close()
        raise
    app[CALLBACKS_URL] = url
    log.info("callbacks listening on %s (outbox %s)", url, config.callbacks.store)
    yield
    await runner.cleanup()
    await worker.stop()
    await outbox.close()


async def admin_listener(app: web.Application) -> AsyncIterator[None]:
    """/healthz, /readyz and /metrics on a listener of their own, when admin.listen says so.

    Its cleanup runs first (cleanup contexts unwind in reverse), but a drain has marked the
    gateway unready long before.
    """
    config = app[CONFIG]
    listen = config.admin.listen
    if listen is None:
        yield
        return
    admin = web.Application()
    admin.router.add_routes(admin_routes(app[READINESS], app[METRICS]))
    admin.router.add_routes(contract_routes(lambda: app[LIVE_CONFIG].current, for_callers=False))
    runner = GuardedRunner(
        admin,
        connection_limits(config),
        shutdown_timeout=SIDE_SHUTDOWN_S,
        on_connections=app[METRICS].connections_on(ADMIN),
    )
    url = await start_listener(runner, listen, "admin.listen", _shared(config))
    log.info("admin listening on %s (/healthz, /readyz, /metrics, /openapi.json, /docs)", url)
    yield
    await runner.cleanup()


def _shared(config: Config) -> bool:
    """Whether this process's listeners share their ports: a worker's do, with its siblings."""
    return config.placement is not None
