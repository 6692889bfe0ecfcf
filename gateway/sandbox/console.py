"""The /sandbox/ controls a developer's curl or a test drives: what the platform's other
parties do (a user logs in, the payer pays, the console rotates an app's secret), what a
phone and a trade look like, and resetting and counting. Faults are in faults.py, the
simulator page's own controls in simulator.py."""

from __future__ import annotations

import math

from aiohttp import web

from gateway.core.verification import Rejected
from gateway.sandbox.controls import (
    DEFAULT_KEEP_PREVIOUS_S,
    WORLD,
    appid_of,
    control_params,
    ok,
    set_secret,
)
from gateway.sandbox.faults import FAULTS
from gateway.sandbox.receiver import RECEIVER
from gateway.sandbox.world import trade_view as world_trade_view

MAX_KEEP_PREVIOUS_S = 86400.0


async def login(request: web.Request) -> web.Response:
    """POST /sandbox/login: user (and appid, unless only one app is registered) -> a code."""
    world = request.app[WORLD]
    params = await control_params(request)
    return ok(world.login(appid_of(world, params), params.get("user", "")))


async def pay(request: web.Request) -> web.Response:
    """POST /sandbox/trades/{trade_no}/pay: result succeeded or failed (failReasonType)."""
    params = await control_params(request)
    reason = params.get("failReasonType")
    if reason is not None and not reason.lstrip("-").isdigit():
        raise Rejected(400, "failReasonType must be a number from the doc's table")
    detail = request.app[WORLD].pay(
        request.match_info["trade_no"],
        params.get("result", ""),
        int(reason) if reason is not None else None,
    )
    return ok(detail)


async def trade_view(request: web.Request) -> web.Response:
    """GET /sandbox/trades/{trade_no}: the detail, notifyUrl and callback attempts."""
    trade = request.app[WORLD].trade(request.match_info["trade_no"])
    return ok(world_trade_view(trade))


async def inbox(request: web.Request) -> web.Response:
    """GET /sandbox/inbox/{open_id}: the notifications and live cards one openId got."""
    return ok(request.app[WORLD].inbox(request.match_info["open_id"]))


async def rotate_secret(request: web.Request) -> web.Response:
    """POST /sandbox/apps/{appid}/secret: the app's new secret (the old one is accepted for
    keep_previous_s more, 300 by default)."""
    params = await control_params(request)
    secret = params.get("secret", "")
    if not secret.isprintable() or secret.startswith(("{", "[", "<")):
        # A JSON object, a list or a file part flattened into text is no secret anyone set.
        raise Rejected(400, "secret must be plain text")
    try:
        keep_previous_s = float(params.get("keep_previous_s") or DEFAULT_KEEP_PREVIOUS_S)
    except ValueError:
        keep_previous_s = math.nan
    if not 0 <= keep_previous_s <= MAX_KEEP_PREVIOUS_S:
        raise Rejected(
            400, f"keep_previous_s must be a number of seconds from 0 to {MAX_KEEP_PREVIOUS_S:g}"
        )
    set_secret(request.app, request.match_info["appid"], secret, keep_previous_s)
    return ok(True)


async def reset(request: web.Request) -> web.Response:
    """POST /sandbox/reset: forgets users, trades, messages, calls, faults and deliveries."""
    request.app[WORLD].reset()
    request.app[FAULTS].clear()
    request.app[RECEIVER].received.clear()
    return ok(True)


async def stats(request: web.Request) -> web.Response:
    """GET /sandbox/stats: OpenAPI calls by path, and requests a hang fault holds now."""
    return ok({"calls": dict(request.app[WORLD].calls), "hanging": request.app[FAULTS].hanging})


def add_console_routes(app: web.Application) -> None:
    app.router.add_post("/sandbox/login", login)
    app.router.add_post("/sandbox/trades/{trade_no}/pay", pay)
    app.router.add_get("/sandbox/trades/{trade_no}", trade_view)
    app.router.add_get("/sandbox/inbox/{open_id}", inbox)
    app.router.add_post("/sandbox/reset", reset)
    app.router.add_post("/sandbox/apps/{appid}/secret", rotate_secret)
    app.router.add_get("/sandbox/stats", stats)
