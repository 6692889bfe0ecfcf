"""Every listener the process opens (the callers', the sandbox's, the callbacks', the admin's):
how each is guarded, and the one way each is started.

What stops the process starting is a StartError whose message names the config key to look
at; the command line prints it on one line and exits 1.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import replace

from aiohttp import web

from gateway.callbacks.outbox import OutboxError
from gateway.config.model import Config
from gateway.config.schema import LimitsConfig, ListenConfig
from gateway.http.connections import ConnectionLimits
from gateway.http.server import GuardedRunner
from gateway.sandbox.server import MAX_LINE_BYTES

# How long the sandbox's and the admin listener's requests may hold a stop.
SIDE_SHUTDOWN_S = 1.0
# Each listener's name in neu_gateway_connections{listener}.
EGRESS, CALLBACKS, ADMIN, SANDBOX = "egress", "callbacks", "admin", "sandbox"


class StartError(Exception):
    """The gateway could not start; the message names the config key to look at."""


class CannotStart(Exception):
    """A resource the app opens as it starts (the outbox, an app's TLS files) cannot be
    opened; the message starts with its config key."""


def listen_failure(key: str, host: str, port: int, exc: OSError) -> StartError:
    """Why the listener configured at `key` could not bind, in one line."""
    if exc.errno == errno.EADDRINUSE:
        reason = f"the port is in use by another process (stop it, or change {key})"
    elif exc.errno is not None and exc.errno > 0:
        # asyncio words its own message around the system's; the system's is the clear part.
        reason = os.strerror(exc.errno)
    else:
        reason = exc.strerror or str(exc)  # a name that does not resolve, for one
    return StartError(f"cannot start: {key}: cannot listen on {host}:{port}: {reason}")


async def start_listener(
    runner: web.AppRunner, listen: ListenConfig, key: str, shared: bool = False
) -> str:
    """Starts the runner's app (and so what the app owns: for the gateway's own, the sandbox,
    callbacks and admin listeners, the outbox), then its listener as `listen` (the config's
    `key`) says; returns the URL it listens on. `shared`: a port the workers share.

    Whatever stops it is a StartError, the runner cleaned up; a listener the app owns fails
    its start the same way, and that error goes up unchanged.
    """
    try:
        await runner.setup()
    except (OSError, OutboxError, CannotStart) as exc:
        await runner.cleanup()
        raise StartError(f"cannot start: {exc}") from None
    except StartError:
        await runner.cleanup()
        raise
    try:
        await _site(runner, listen, shared).start()
    except OSError as exc:
        await runner.cleanup()
        raise listen_failure(key, listen.host, listen.port, exc) from None
    host, port, *_ = runner.addresses[0]
    return http_url(host, port)


def http_url(host: str, port: int) -> str:
    """The URL of a listener; an IPv6 address in brackets (RFC 3986), or its port would read
    as part of the address."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _site(runner: web.AppRunner, listen: ListenConfig, shared: bool) -> web.TCPSite:
    """A listener as `listen` says; `shared`: a port the workers share (the kernel spreads
    connections among them)."""
    return web.TCPSite(
        runner, listen.host, listen.port, backlog=listen.backlog, reuse_port=shared or None
    )


def connection_limits(config: Config) -> ConnectionLimits:
    """How each of the gateway's listeners bounds its connections."""
    return limits_for(config.limits)


def limits_for(limits: LimitsConfig) -> ConnectionLimits:
    return ConnectionLimits(
        max_header_bytes=limits.max_header_bytes,
        header_timeout_s=limits.header_timeout_s,
        keepalive_timeout_s=limits.keepalive_timeout_s,
        max_connections=limits.max_connections,
        send_idle_timeout_s=limits.body_idle_timeout_s,
    )


def sandbox_runner(
    sandbox: web.Application,
    limits: LimitsConfig,
    gateways: int = 1,
    on_connections: Callable[[int], None] | None = None,
) -> GuardedRunner:
    """The sandbox's listener, guarded as the gateway's own are (header bytes and time, a
    connection cap): it runs in the gateway's process, or beside it, and a slow or oversized
    request to it must not hold that process's memory either. Its refusals are not the
    gateway's traffic, so they get no access line. Its header lines may be as long as its
    parser takes, above any the gateway forwards.

    Its cap leaves room for each of the `gateways` calling it (each has at most
    limits.max_connections requests at the sandbox at once) and as many more clients of its
    own (its controls, the simulator, a client that signs for itself). `on_connections`: told
    each connection opened (+1) and closed (-1).
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
        on_connections=on_connections,
        **guard.handler_args(),
    )
