"""The SuperApp simulator: a page on the sandbox's own listener that plays the phone, and the
JSON controls and event stream it reads. Static files only, served as they are (no build)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from gateway.core.hosts import host_name, is_loopback
from gateway.core.verification import Rejected
from gateway.sandbox.controls import EVENTS, WORLD, appid_of, control_params, ok
from gateway.sandbox.world import World

STATIC = Path(__file__).parent / "static"
ASSETS = {"app.css": "text/css", "app.js": "text/javascript"}
# The page loads nothing from elsewhere, not even the icons a sendActivity names (it draws
# its own), so it works offline and a mini app's icon host never hears of a developer's page.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# An open page hears something at least this often, so a closed one is noticed.
HEARTBEAT_S = 15.0
BACKEND_TIMEOUT_S = 5.0


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def asset(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound(reason="no such file")
    return web.FileResponse(STATIC / name, headers={**PAGE_HEADERS, "Content-Type": ASSETS[name]})


def _now(world: World) -> int:
    return world.clock.now_ms()


async def apps(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    return ok({"apps": list(world.secrets), "now": _now(world)})


async def users(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    return ok({"users": world.users(), "now": _now(world)})


async def create_user(request: web.Request) -> web.Response:
    params = await control_params(request)
    return ok(
        request.app[WORLD].create_user(
            params.get("name", ""), params.get("phone", ""), params.get("country", "")
        )
    )


async def open_mini_app(request: web.Request) -> web.Response:
    """What neu.login() / neu.getAuthCode() give the mini app, optionally POSTed (form field
    `code`) to the mini app's backend at `backend_url`, as its front end would."""
    world = request.app[WORLD]
    params = await control_params(request)
    backend_url = params.get("backend_url", "").strip()
    if backend_url:
        _check_backend(backend_url, world.settings.allowed_backend_hosts)
    login = world.login(appid_of(world, params), params.get("user", ""))
    now = _now(world)
    opened: dict[str, Any] = {
        **login,
        "expiresAt": now + login["expiresIn"] * 1000,
        "backend": None,
        "now": now,
    }
    if backend_url:
        opened["backend"] = await _send_code(backend_url, login["code"])
    return ok(opened)


def _check_backend(url: str, allowed_hosts: frozenset[str]) -> None:
    """A mini app's backend is on this machine, unless the sandbox was told of another host:
    whoever can reach the sandbox must not make it send requests anywhere."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
        # The host the client will connect to, as it parses the URL: the one judged below.
        connects_to = URL(url).host
    except ValueError:
        raise Rejected(400, "backend_url must be an http(s) URL") from None
    # No user part: parsers differ on which `@` ends it, so on which host is meant.
    if (
        parts.scheme not in ("http", "https")
        or not hostname
        or "@" in parts.netloc
        or (connects_to or "").lower() != hostname
    ):
        raise Rejected(400, "backend_url must be an http(s) URL")
    if not is_loopback(hostname) and host_name(hostname) not in allowed_hosts:
        raise Rejected(
            403,
            "backend_url must be on this machine (localhost, 127.0.0.1, [::1]); another host "
            "only when the sandbox allows it (sandbox.allowed_backend_hosts, or "
            "neu-gateway sandbox --allow-backend-host)",
        )


async def _send_code(url: str, code: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=BACKEND_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data={"code": code}, allow_redirects=False) as response,
        ):
            return {"url": url, "httpStatus": response.status}
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return {"url": url, "error": type(exc).__name__}


def _open_ids(world: World, params: dict[str, str]) -> list[str] | None:
    if params.get("user"):
        return list(world.user_view(params["user"])["openIds"].values())
    if params.get("openId"):
        return [params["openId"]]
    return None


async def trades(request: web.Request) -> web.Response:
    """Trades newest first: of one user (`user`, across apps), one `openId`, or all."""
    world = request.app[WORLD]
    params = await control_params(request)
    return ok({"trades": world.trades(_open_ids(world, params)), "now": _now(world)})


async def let_expire(request: web.Request) -> web.Response:
    return ok(request.app[WORLD].let_expire(request.match_info["trade_no"]))


async def phone(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    user = request.query.get("user", "")
    if not user:
        raise Rejected(400, "user is required")
    return ok({**world.phone(user), "now": _now(world)})


async def requests(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    return ok({"requests": world.requests.entries(), "now": _now(world)})


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `hello` once, then `change` with the kinds that changed."""
    stream = request.app[EVENTS]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    seen = stream.version
    try:
        await response.write(_event("hello", seen, {"version": seen}))
        while not stream.closed:
            await stream.wait(seen, HEARTBEAT_S)
            kinds = stream.since(seen)
            if kinds:
                seen = stream.version
                await response.write(_event("change", seen, {"version": seen, "kinds": kinds}))
            elif not stream.closed:
                await response.write(b": still here\n\n")
    except ConnectionResetError:
        pass  # the page went away
    return response


def _event(name: str, number: int, data: dict[str, Any]) -> bytes:
    return f"event: {name}\nid: {number}\ndata: {json.dumps(data)}\n\n".encode()


def add_simulator_routes(app: web.Application) -> None:
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", asset)
    app.router.add_get("/sandbox/apps", apps)
    app.router.add_get("/sandbox/users", users)
    app.router.add_post("/sandbox/users", create_user)
    app.router.add_post("/sandbox/open-mini-app", open_mini_app)
    app.router.add_get("/sandbox/trades", trades)
    app.router.add_post("/sandbox/trades/{trade_no}/expire", let_expire)
    app.router.add_get("/sandbox/phone", phone)
    app.router.add_get("/sandbox/requests", requests)
    app.router.add_get("/sandbox/events", events)
