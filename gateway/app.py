"""Wiring: the web application, its routes, and the resources it owns."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway import proxy
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.middlewares import gateway_middleware
from gateway.state import CLOCK, CONFIG, UPSTREAM
from gateway.upstream import Upstream, close_session, create_session


def create_app(config: Config, clock: Clock | None = None) -> web.Application:
    app = web.Application(
        middlewares=[gateway_middleware],
        # Bodies are read by the handler with its own limit; this only guards request.read().
        client_max_size=config.limits.max_body_bytes,
    )
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    app.cleanup_ctx.append(_upstream_client)
    app.router.add_get("/healthz", health, allow_head=True)
    app.router.add_route(
        "*", proxy.API_PREFIX + "{tail:.*}", proxy.forward, expect_handler=proxy.expect_body
    )
    return app


async def _upstream_client(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    session = create_session(config.timeouts)
    app[UPSTREAM] = Upstream(session, config.limits)
    yield
    await close_session(session)


async def health(request: web.Request) -> web.Response:
    return web.json_response(
        {"responseHeader": {"status": 200, "msg": "OK"}, "response": {"status": "ok"}}
    )
