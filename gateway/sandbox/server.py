"""The sandbox as an aiohttp application: the platform's OpenAPI under /neuopenapi/
(openapi.py), the /sandbox/ controls (console.py, faults.py) and the simulator page
(simulator.py) on one listener, with the middleware that answers every refusal in the
platform's envelope and dates every answer by the platform's clock.

An OpenAPI call answers HTTP 200 whatever its outcome, as the platform does; the /sandbox/
controls answer with their outcome's status on the wire too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from email.utils import formatdate

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import envelope
from gateway.core.verification import Rejected
from gateway.sandbox.console import add_console_routes
from gateway.sandbox.controls import (
    EVENTS,
    NOTIFIER,
    TIMERS,
    WORLD,
    sandbox_appids,
    set_secret,
)
from gateway.sandbox.events import Events
from gateway.sandbox.faults import FAULTS, add_fault_routes, faulted_answer
from gateway.sandbox.notifier import Notifier
from gateway.sandbox.openapi import ECHO_PATH, add_openapi_routes
from gateway.sandbox.origin import own_page_only
from gateway.sandbox.receiver import add_receiver_routes, set_signing_secrets
from gateway.sandbox.simulator import add_simulator_routes
from gateway.sandbox.world import Settings, World

# What the process embedding a sandbox uses, besides create_sandbox_app.
__all__ = [
    "ECHO_PATH",
    "MAX_LINE_BYTES",
    "OffsetClock",
    "create_sandbox_app",
    "sandbox_appids",
    "set_secret",
    "set_signing_secrets",
]

MAX_BODY_BYTES = 256 * 1024 * 1024
# Above any gateway's header limits, so what a gateway forwards is judged by the platform's
# rules, not refused in plain text for its length.
MAX_LINE_BYTES = 1 << 16


class OffsetClock:
    """The platform's clock: the host's, moved by sandbox.clock_offset_s."""

    def __init__(self, clock: Clock, offset_s: float) -> None:
        self._clock = clock
        self._offset_ms = round(offset_s * 1000)

    def now_ms(self) -> int:
        return self._clock.now_ms() + self._offset_ms

    def monotonic(self) -> float:
        return self._clock.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self._clock.sleep(seconds)


def is_platform_path(request: web.Request) -> bool:
    return request.path.startswith("/neuopenapi/")


@web.middleware
async def sandbox_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    if not response.prepared:  # a stream of events has sent its headers already
        # The platform's time, as a server's Date header tells it (and as the gateway reads it).
        now_s = request.app[WORLD].clock.now_ms() / 1000
        response.headers["Date"] = formatdate(now_s, usegmt=True)
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if is_platform_path(request):
            faulted = await faulted_answer(request)
            if faulted is not None:
                return faulted
        return await handler(request)
    except Rejected as exc:
        return _error(request, exc.status, exc.msg)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(request, exc.status, exc.reason)


def _error(request: web.Request, status: int, msg: str) -> web.Response:
    http_status = 200 if is_platform_path(request) else status
    return web.json_response(envelope(status, msg), status=http_status)


def create_sandbox_app(
    secrets: Mapping[str, str], settings: Settings | None = None, clock: Clock | None = None
) -> web.Application:
    """The sandbox for these apps (appid -> secret)."""
    settings = settings or Settings()
    host_clock = clock or SystemClock()
    clock = OffsetClock(host_clock, settings.clock_offset_s)
    app = web.Application(
        # The guard inside the envelope's middleware, so its refusal is answered as any other.
        middlewares=[sandbox_middleware, own_page_only],
        client_max_size=MAX_BODY_BYTES,
        handler_args={"max_line_size": MAX_LINE_BYTES, "max_field_size": MAX_LINE_BYTES},
    )
    events = Events()
    notifier = Notifier(dict(secrets), settings, clock, on_change=events.publish)
    app[WORLD] = World(secrets, settings, clock, on_final=notifier.notify, on_change=events.publish)
    app[NOTIFIER] = notifier
    app[EVENTS] = events
    app[TIMERS] = []
    app.cleanup_ctx.append(_lifetime)
    add_openapi_routes(app)
    add_console_routes(app)
    add_fault_routes(app)
    add_simulator_routes(app)
    add_receiver_routes(app, host_clock)
    app.on_shutdown.append(_end_event_streams)
    return app


async def _end_event_streams(app: web.Application) -> None:
    # Open pages' event streams would otherwise hold the stop until its timeout.
    app[EVENTS].close()


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    yield
    for handle in app[TIMERS]:
        handle.cancel()
    app[FAULTS].clear()
    await app[NOTIFIER].close()
