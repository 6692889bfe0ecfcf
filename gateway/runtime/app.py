"""Wiring: the web application, its routes, and the resources it owns."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from aiohttp import web

from gateway import logs
from gateway.callbacks.delivery import DeliveryPolicy, DeliveryWorker
from gateway.callbacks.listener import CallbackContext, create_callbacks_app
from gateway.callbacks.outbox import Outbox, OutboxError, RedisOutbox, SqliteOutbox, sqlite_path
from gateway.config.errors import ConfigError
from gateway.config.live import LiveConfig
from gateway.config.model import App, Config
from gateway.config.schema import SQLITE_STORE, LimitsConfig, ListenConfig, without_credentials
from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import GatewayError
from gateway.core.platform import API_PREFIX
from gateway.egress import proxy
from gateway.egress.keys import BASE_URLS, CALLER_RATES, IN_FLIGHT, TOKENS, UPSTREAM, WAITS
from gateway.egress.ratelimits import CallerRates, InFlight
from gateway.http.admin import Readiness, admin_routes
from gateway.http.connections import ConnectionLimits
from gateway.http.dispatch import add_prefix_route
from gateway.http.keys import CLOCK, CONFIG, LIVE_CONFIG, METRICS, READINESS
from gateway.http.middlewares import gateway_middleware
from gateway.http.server import GuardedRunner
from gateway.metrics import Metrics
from gateway.runtime.keys import CALLBACKS_URL, DELIVER_TO, EMBEDDED_SANDBOX
from gateway.sandbox.server import (
    MAX_LINE_BYTES,
    create_sandbox_app,
    sandbox_appids,
    set_secret,
)
from gateway.sandbox.world import Settings
from gateway.upstream.client import CallPolicy, Upstream
from gateway.upstream.sessions import Sessions
from gateway.upstream.stores import MemoryStore, RedisStore
from gateway.upstream.tls import TlsSetupError
from gateway.upstream.tokens import Store, StoreError, TokenCache
from gateway.upstream.waits import TradeWaits

log = logs.logger("neu_gateway")
# How long the sandbox's and the admin listener's requests may hold a stop.
SIDE_SHUTDOWN_S = 1.0


class CannotStart(Exception):
    """A listener or the outbox cannot be opened; the message starts with its config key."""


def listen_failure(key: str, host: str, port: int, exc: OSError) -> CannotStart:
    """Why the listener configured at `key` could not bind, in one line."""
    if exc.errno == errno.EADDRINUSE:
        reason = f"the port is in use by another process (stop it, or change {key})"
    elif exc.errno is not None and exc.errno > 0:
        # asyncio words its own message around the system's; the system's is the clear part.
        reason = os.strerror(exc.errno)
    else:
        reason = exc.strerror or str(exc)  # a name that does not resolve, for one
    return CannotStart(f"{key}: cannot listen on {host}:{port}: {reason}")


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
    app.cleanup_ctx.append(_embedded_sandbox)
    app.cleanup_ctx.append(_upstream_client)
    app.cleanup_ctx.append(_token_cache)
    app.cleanup_ctx.append(_callbacks)
    app.cleanup_ctx.append(_admin_listener)
    app[WAITS] = TradeWaits(app[CLOCK])
    app[CALLER_RATES] = CallerRates()
    in_flight = app[IN_FLIGHT] = InFlight()

    async def count_in_flight() -> None:
        for caller, count in in_flight.by_caller().items():
            metrics.requests_in_flight.labels(caller).set(count)

    metrics.on_scrape(count_in_flight)
    if config.admin.listen is None:
        app.router.add_routes(admin_routes(app[READINESS], metrics))
    add_prefix_route(app, API_PREFIX, proxy.forward, proxy.expect_body)
    return app


async def _embedded_sandbox(app: web.Application) -> AsyncIterator[None]:
    """Starts the sandbox on its own listener when an app's upstream is `sandbox`."""
    config = app[CONFIG]
    if not config.sandbox_apps:
        yield
        return
    if config.placement is not None:
        # A worker: the supervisor runs the one sandbox all workers share.
        assert config.placement.sandbox_url is not None
        app[BASE_URLS].update(
            {entry.name: config.placement.sandbox_url for entry in config.sandbox_apps}
        )
        yield
        return
    sandbox = create_sandbox_app(
        {entry.appid: entry.secret.reveal() for entry in config.sandbox_apps},
        sandbox_settings(config),
        app[CLOCK],
    )
    runner = sandbox_runner(sandbox, config.limits)
    await runner.setup()
    listen = config.sandbox.listen
    try:
        await _site(runner, listen, config).start()
    except OSError as exc:
        await runner.cleanup()
        raise listen_failure("sandbox.listen", listen.host, listen.port, exc) from None
    host, port, *_ = runner.addresses[0]
    url = f"http://{host}:{port}"
    log.info(
        "sandbox listening on %s (apps: %s)", url, ", ".join(a.name for a in config.sandbox_apps)
    )
    # In place: whoever holds the mapping (the callbacks listener) sees the address.
    app[BASE_URLS].update({entry.name: url for entry in config.sandbox_apps})
    app[EMBEDDED_SANDBOX].append((sandbox, url))
    yield
    await runner.cleanup()


def sandbox_runner(
    sandbox: web.Application, limits: LimitsConfig, gateways: int = 1
) -> GuardedRunner:
    """The sandbox's listener, guarded as the gateway's own are (header bytes and time, a
    connection cap): it runs in the gateway's process, or beside it, and a slow or oversized
    request to it must not hold that process's memory either. Its refusals are not the
    gateway's traffic, so they get no access line. Its header lines may be as long as its
    parser takes, above any the gateway forwards.

    Its cap leaves room for each of the `gateways` calling it (each has at most
    limits.max_connections requests at the sandbox at once) and as many more clients of its
    own (its controls, the simulator, a client that signs for itself).
    """
    guard = replace(
        limits_for(limits),
        max_header_bytes=MAX_LINE_BYTES,
        max_connections=(gateways + 1) * limits.max_connections,
    )
    return GuardedRunner(
        sandbox,
        guard,
        log_refusals=False,
        access_log=None,
        # As it ran before it was guarded: a handler whose client left runs to its end (one
        # cancelled while aiohttp opens a page's file would leave the file open).
        handler_cancellation=False,
        # The emulator's own requests (a hang fault) must not hold the gateway's stop.
        shutdown_timeout=SIDE_SHUTDOWN_S,
        **guard.handler_args(),
    )


def connection_limits(config: Config) -> ConnectionLimits:
    """How each of the gateway's listeners bounds its connections (see `listener`)."""
    return limits_for(config.limits)


def limits_for(limits: LimitsConfig) -> ConnectionLimits:
    return ConnectionLimits(
        max_header_bytes=limits.max_header_bytes,
        header_timeout_s=limits.header_timeout_s,
        keepalive_timeout_s=limits.keepalive_timeout_s,
        max_connections=limits.max_connections,
        send_idle_timeout_s=limits.body_idle_timeout_s,
    )


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


async def _upstream_client(app: web.Application) -> AsyncIterator[None]:
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
    # Each upstream's clock, learnt before the first call needs it; a failure is only logged.
    probes = [
        asyncio.ensure_future(_probe(upstream, entry, app[BASE_URLS]))
        for entry in config.apps.values()
    ]
    yield
    closing = True
    for probe in probes:
        probe.cancel()
    await asyncio.gather(*probes, return_exceptions=True)
    await sessions.close()


async def _probe(upstream: Upstream, entry: App, base_urls: dict[str, str]) -> None:
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


async def _token_cache(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    cache = config.cache
    store: Store
    if cache.backend == "redis":
        assert cache.url is not None
        store = RedisStore(cache.url, cache.key_prefix, cache.timeout_s)
        log.info(
            "token cache: redis at %s, keys under %r",
            without_credentials(cache.url),
            cache.key_prefix,
        )
    else:
        store = MemoryStore(cache.max_entries, app[CLOCK])
    metrics = app[METRICS]
    tokens = app[TOKENS] = TokenCache(
        store, app[CLOCK], cache.safety_margin_s, config.timeouts.total_s, metrics.count_token
    )
    app[READINESS].add_check("cache", store.ping)

    async def count_entries() -> None:
        # Down: the cache check on /readyz says so; the gauge keeps its last value.
        with contextlib.suppress(StoreError):
            metrics.token_cache_entries.set(await tokens.entries())

    metrics.on_scrape(count_entries)
    yield
    await store.close()


def open_outbox(config: Config, clock: Clock | None = None) -> Outbox:
    if config.callbacks.store == "redis":
        assert config.cache.url is not None
        return RedisOutbox(config.cache.url, config.cache.key_prefix, config.cache.timeout_s)
    return SqliteOutbox(sqlite_path(config.callbacks.store or SQLITE_STORE), clock)


async def _callbacks(app: web.Application) -> AsyncIterator[None]:
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
    targets: dict[str, str | None] = app[DELIVER_TO]
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
    app[READINESS].add_check("outbox", outbox.check_writable)

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
    )
    await runner.setup()
    try:
        await _site(runner, listen, config).start()
    except OSError as exc:
        await runner.cleanup()
        await worker.stop()
        await outbox.close()
        raise listen_failure("callbacks.listen", listen.host, listen.port, exc) from None
    host, port, *_ = runner.addresses[0]
    app[CALLBACKS_URL] = f"http://{host}:{port}"
    log.info("callbacks listening on http://%s:%d (outbox %s)", host, port, config.callbacks.store)
    yield
    await runner.cleanup()
    await worker.stop()
    await outbox.close()


async def _admin_listener(app: web.Application) -> AsyncIterator[None]:
    """/healthz, /readyz and /metrics on a listener of their own, when admin.listen says so.

    Its cleanup runs first (cleanup contexts unwind in reverse), but a drain has marked the
    gateway unready long before.
    """
    listen = app[CONFIG].admin.listen
    if listen is None:
        yield
        return
    admin = web.Application()
    admin.router.add_routes(admin_routes(app[READINESS], app[METRICS]))
    guard = connection_limits(app[CONFIG])
    runner = GuardedRunner(admin, guard, shutdown_timeout=SIDE_SHUTDOWN_S)
    await runner.setup()
    try:
        await _site(runner, listen, app[CONFIG]).start()
    except OSError as exc:
        await runner.cleanup()
        raise listen_failure("admin.listen", listen.host, listen.port, exc) from None
    host, port, *_ = runner.addresses[0]
    log.info("admin listening on http://%s:%d (/healthz, /readyz, /metrics)", host, port)
    yield
    await runner.cleanup()


def listener_site(runner: web.AppRunner, listen: ListenConfig, shared: bool) -> web.TCPSite:
    """A listener as `listen` says; `shared`: a port the workers share (the kernel spreads
    connections among them)."""
    return web.TCPSite(
        runner, listen.host, listen.port, backlog=listen.backlog, reuse_port=shared or None
    )


def _site(runner: web.AppRunner, listen: ListenConfig, config: Config) -> web.TCPSite:
    return listener_site(runner, listen, shared=config.placement is not None)


def apply_config(app: web.Application, new: Config) -> list[str]:
    """Puts a reloaded config in force; returns the keys only a restart can change.

    Raises ConfigError, leaving the running config as it was, for a change that cannot be
    made while running.
    """
    embedded = app[EMBEDDED_SANDBOX]
    placement = app[CONFIG].placement
    if placement is not None:
        new = replace(new, placement=placement)
    shared_sandbox = placement.sandbox_url if placement is not None else None
    if new.sandbox_apps and not embedded and shared_sandbox is None:
        names = ", ".join(entry.name for entry in new.sandbox_apps)
        raise ConfigError(
            [f"apps ({names}): upstream sandbox needs a restart (no embedded sandbox runs)"]
        )
    if embedded:
        sandbox = embedded[0][0]
        unknown = [
            f"apps.{entry.name}"
            for entry in new.sandbox_apps
            if entry.appid not in sandbox_appids(sandbox)
        ]
        if unknown:
            raise ConfigError(
                [f"{', '.join(unknown)}: a new app on the embedded sandbox needs a restart"]
            )
    problems = tls_setup_problems(new)
    if problems:
        raise ConfigError(problems)
    upstream = app.get(UPSTREAM)
    if upstream is not None:
        upstream.renew_sessions()
    live = app[LIVE_CONFIG]
    before = live.current
    pinned = live.swap(new, time.time())
    current = live.current
    for name, entry in current.apps.items():
        if entry.uses_sandbox and shared_sandbox is not None:
            # The supervisor tells the sandbox it runs of new secrets.
            app[BASE_URLS][name] = shared_sandbox
        elif entry.uses_sandbox:
            sandbox, url = embedded[0]
            app[BASE_URLS][name] = url
            old = before.apps.get(name)
            if old is None or not old.secret.matches(entry.secret.reveal()):
                # The emulated platform is told the new secret, keeping the old one a while.
                set_secret(sandbox, entry.appid, entry.secret.reveal())
        else:
            app[BASE_URLS][name] = entry.upstream
        app[DELIVER_TO][name] = entry.callbacks.deliver_to
    deliver_to: dict[str, str | None] = app[DELIVER_TO]
    for gone in deliver_to.keys() - current.apps.keys():
        # Its pending deliveries wait, as for any app without deliver_to, until it is back.
        del deliver_to[gone]
        app[BASE_URLS].pop(gone, None)
    app[METRICS].config_loaded.set(live.loaded_at)
    return pinned


async def probe_upstreams(config: Config) -> tuple[list[str], bool]:
    """check-config --probe: for each app, whether its upstream answers (through its TLS and
    proxy settings) and its clock's offset; and whether all of them did."""
    clock = SystemClock()
    sessions = Sessions(config.pool, config.timeouts.connect_s, config.timeouts.total_s)
    upstream = Upstream(
        sessions, config.limits.max_response_bytes, Metrics(), clock, call_policy(config)
    )
    lines, all_answered = [], True
    try:
        for entry in config.apps.values():
            if entry.uses_sandbox:
                lines.append(f"app {entry.name}: sandbox (embedded; runs on this host's clock)")
                continue
            try:
                Sessions.check_tls(entry)
                answer = await upstream.probe(entry, entry.upstream)
            except (GatewayError, TlsSetupError) as exc:
                all_answered = False
                message = exc.msg if isinstance(exc, GatewayError) else str(exc)
                lines.append(f"app {entry.name}: {entry.upstream} failed: {message}")
                continue
            offset = upstream.offset_s(entry.upstream)
            corrected = (
                "; beyond clock.max_skew_s, so the gateway signs with the platform's time"
                if abs(offset) > config.clock.max_skew_s
                else ""
            )
            lines.append(
                f"app {entry.name}: {entry.upstream} answered HTTP {answer.status}; "
                f"the platform's clock is {offset:+.1f} s from this host's{corrected}"
            )
    finally:
        await sessions.close()
    return lines, all_answered


def tls_setup_problems(config: Config) -> list[str]:
    """What is wrong with the TLS files the config names (readable, a CA, a key that fits
    its certificate), as check-config and a reload report it."""
    problems = []
    for entry in config.apps.values():
        try:
            Sessions.check_tls(entry)
        except TlsSetupError as exc:
            problems.append(str(exc))
    return sorted(set(problems))
