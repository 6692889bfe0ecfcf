"""Requests under one path prefix handed straight to their route, past aiohttp's router.

aiohttp's application resolves each request through its router, builds its middleware chain
and wraps it in a middleware of its own that sets the current application. For the proxy's
requests, nearly all of the traffic, that cost a few microseconds of a request's 150 or so
(measured with bench/compare.py), about what signing it costs. A route added with
`add_prefix_route` is called directly: the same handler with the application's middlewares
around it, and the same application and route in `match_info`.

A request with `Expect` still goes the router's way, which runs the route's expect handler, as
does any request whose raw path is not under the prefix. The router matches the decoded path,
the shortcut the raw one; a raw path under the prefix decodes to one under it as well, so the
two send a request to the same handler. `match_info` holds no path variables on the shortcut.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import cast

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

from gateway.http.aiohttp_server import set_match_info

# What aiohttp's server calls with each request, and what a route calls on Expect.
ServerHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


@dataclass(frozen=True)
class PrefixRoute:
    prefix: str
    route: web.AbstractRoute


PREFIX_ROUTE = web.AppKey("neu_prefix_route", PrefixRoute)


def add_prefix_route(
    app: web.Application, prefix: str, handler: Handler, expect_handler: ExpectHandler
) -> None:
    """Every method on every path under `prefix` to `handler`, through the shortcut."""
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise ValueError(f"a prefix route needs a prefix like /name/, not {prefix!r}")
    route = app.router.add_route(
        "*",
        prefix + "{tail:.*}",
        handler,
        expect_handler=expect_handler,
    )
    app[PREFIX_ROUTE] = PrefixRoute(prefix, route)


def dispatcher(app: web.Application, routed: ServerHandler) -> ServerHandler:
    """The application's request handler, with its prefix route (if any) taken directly;
    `routed` is the application's own (the router's way)."""
    entry = app.get(PREFIX_ROUTE)
    if entry is None:
        return routed
    prefix, route = entry.prefix, entry.route
    # As aiohttp builds a route's chain: the first middleware listed runs first.
    chain: Handler = route.handler
    for middleware in reversed(app.middlewares):
        chain = partial(middleware, handler=chain)

    async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
        if not request.raw_path.startswith(prefix) or hdrs.EXPECT in request.headers:
            return await routed(request)
        # The application's request factory makes web.Requests.
        request = cast(web.Request, request)
        match_info = UrlMappingMatchInfo({}, route)
        match_info.add_app(app)
        match_info.current_app = app
        match_info.freeze()
        set_match_info(request, match_info)
        return await chain(request)

    return dispatch
