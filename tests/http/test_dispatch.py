"""The prefix route's shortcut past aiohttp's router: the same handler, middlewares and
application as the router's way, for every request it takes, and the router's way for the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.http.connections import ConnectionLimits
from gateway.http.dispatch import add_prefix_route
from gateway.http.server import GuardedRunner

LIMITS = ConnectionLimits(
    max_header_bytes=8192, header_timeout_s=5, keepalive_timeout_s=5, max_connections=16
)
NAME = web.AppKey("name", str)
TRACE = web.RequestKey("trace", list[str])


def traced(label: str) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request.setdefault(TRACE, []).append(label)
        response = await handler(request)
        response.headers.add("X-Trace", label)
        return response

    return middleware


async def prefixed(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "handler": "prefixed",
            "app": request.app[NAME],
            "route": request.match_info.route.name,
            "trace": request[TRACE],
        }
    )


async def other(request: web.Request) -> web.Response:
    return web.json_response({"handler": "other", "trace": request[TRACE]})


async def refuse_expect(request: web.Request) -> web.Response | None:
    return web.json_response({"handler": "expect"}, status=417)


def make_app(shortcut: bool) -> web.Application:
    app = web.Application(middlewares=[traced("outer"), traced("inner")])
    app[NAME] = "demo"
    app.router.add_get("/q", other)
    if shortcut:
        add_prefix_route(app, "/p/", prefixed, refuse_expect)
    else:
        app.router.add_route("*", "/p/{tail:.*}", prefixed, expect_handler=refuse_expect)
    return app


async def serve(app: web.Application, runner_class: type[web.AppRunner]) -> web.AppRunner:
    runner = GuardedRunner(app, LIMITS) if runner_class is GuardedRunner else web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def url_of(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def answer(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.request(kwargs.pop("method", "GET"), url, **kwargs) as response:
        body = await response.read()
        return response.status, (body, response.headers.getall("X-Trace", []))


PATHS = ["/p/x", "/p/", "/p/a/b?c=d", "/p/../q", "/p/%2e%2e/q", "/p/%41", "//p/x", "/p", "/q", "/r"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_the_shortcut_answers_as_the_router_does(
    client: aiohttp.ClientSession, path: str, method: str
) -> None:
    shortcut = await serve(make_app(shortcut=True), GuardedRunner)
    routed = await serve(make_app(shortcut=False), web.AppRunner)
    try:
        kwargs = {"method": method, "allow_redirects": False}
        expected = await answer(client, url_of(routed) + path, **kwargs)
        got = await answer(client, url_of(shortcut) + path, **kwargs)
    finally:
        await shortcut.cleanup()
        await routed.cleanup()
    assert got == expected


async def test_a_prefixed_request_skips_the_router(
    client: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(shortcut=True)
    resolved: list[str] = []
    resolve = app.router.resolve

    async def counting(request: web.Request) -> Any:
        resolved.append(request.raw_path)
        return await resolve(request)

    monkeypatch.setattr(app.router, "resolve", counting)
    runner = await serve(app, GuardedRunner)
    try:
        status, (body, trace) = await answer(client, url_of(runner) + "/p/x")
        assert status == 200
        assert trace == ["inner", "outer"]
        assert b'"trace": ["outer", "inner"]' in body
        assert b'"app": "demo"' in body
        assert resolved == []
        await answer(client, url_of(runner) + "/q")
        assert resolved == ["/q"]
    finally:
        await runner.cleanup()


async def test_expect_goes_the_routers_way_to_the_expect_handler(
    client: aiohttp.ClientSession,
) -> None:
    runner = await serve(make_app(shortcut=True), GuardedRunner)
    try:
        status, (body, _) = await answer(
            client, url_of(runner) + "/p/x", method="POST", data=b"x" * 10, expect100=True
        )
    finally:
        await runner.cleanup()
    assert (status, body) == (417, b'{"handler": "expect"}')


def test_a_prefix_is_a_whole_segment() -> None:
    for prefix in ("/p", "p/", ""):
        with pytest.raises(ValueError, match="needs a prefix like /name/"):
            add_prefix_route(web.Application(), prefix, prefixed, refuse_expect)
