"""The platform's OpenAPI under /neuopenapi/: each call verified (appid, timestamp, sign) and
validated as the platform does, answered by the World, and logged with its verdict.

Like the platform, an OpenAPI call answers HTTP 200 and puts its outcome in
`responseHeader.status`. /neuopenapi/sandbox/echo is the sandbox's own: it verifies the sign
and answers with the parameters and files it received.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from typing import IO, Any

from aiohttp import web

from gateway.core import endpoints
from gateway.core.endpoints import ENDPOINTS, Endpoint, validate
from gateway.core.errors import InvalidParams, envelope
from gateway.core.params import joined, parse_urlencoded
from gateway.core.verification import Rejected, check_signed_request
from gateway.sandbox.controls import TIMERS, WORLD
from gateway.sandbox.world import World

ECHO_PATH = "/neuopenapi/sandbox/echo"


async def platform_call(request: web.Request) -> web.Response:
    """One OpenAPI call, answered as the platform does, and logged with its verdict."""
    world = request.app[WORLD]
    received: dict[str, str] = {}
    try:
        answer = await _platform_answer(request, world, received)
    except Rejected as exc:
        world.record_call(request.method, request.path, received, exc.status, exc.msg)
        raise
    world.record_call(request.method, request.path, received, 200, "OK")
    return web.json_response(answer)


async def _platform_answer(
    request: web.Request, world: World, received: dict[str, str]
) -> dict[str, Any]:
    world.calls[request.path] += 1
    endpoint: Endpoint | None = ENDPOINTS.get(request.path)
    if endpoint is None and request.path != ECHO_PATH:
        raise Rejected(404, f"no such OpenAPI endpoint: {request.path[:120]}")
    if endpoint is not None and request.method != endpoint.method:
        raise Rejected(405, f"{request.path} takes {endpoint.method}, not {request.method}")
    params, files = await platform_params(request)
    received.update(params)
    appid = signed_by(world, params)
    if endpoint is None:
        echoed = {key: value for key, value in params.items() if key != "sign"}
        return envelope(200, "OK", response={"params": echoed, "files": files})
    problems = validate(endpoint, params)
    if problems:
        raise Rejected(400, "invalid parameters: " + "; ".join(problems))
    return envelope(200, "OK", response=ACTIONS[endpoint.path](request, world, appid, params))


async def platform_params(request: web.Request) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Query and body parameters as the platform reads them, and any uploaded files."""
    try:
        pairs = parse_urlencoded(request.rel_url.raw_query_string.encode(), "query string")
        files: list[dict[str, Any]] = []
        if request.content_type == "application/x-www-form-urlencoded":
            pairs += parse_urlencoded(await request.read(), "form body")
        elif request.content_type == "multipart/form-data":
            for name, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    size, digest = _measure(value.file)
                    files.append(
                        {"name": name, "filename": value.filename, "size": size, "sha256": digest}
                    )
                else:
                    pairs.append((name, str(value)))
        elif request.body_exists and await request.read():
            raise Rejected(
                415, "the platform takes application/x-www-form-urlencoded or multipart/form-data"
            )
    except InvalidParams as exc:
        raise Rejected(400, exc.msg) from None
    except ValueError:
        raise Rejected(400, "the request body cannot be parsed") from None
    return joined(pairs), files


def _measure(file: IO[bytes]) -> tuple[int, str]:
    """Size and SHA-256 of an uploaded file, read in chunks: uploads may be large."""
    digest, size = hashlib.sha256(), 0
    while chunk := file.read(1 << 16):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def signed_by(world: World, params: Mapping[str, str]) -> str:
    """The appid whose current secret signed the request, or whose secret before its last
    rotation did, while that is still accepted."""
    now_ms = world.clock.now_ms()
    try:
        return check_signed_request(params, world.secrets, now_ms, world.settings.explain)
    except Rejected as rejected:
        appid = params.get("appid", "")
        previous = world.previous_secret(appid)
        if previous is None or rejected.status != 401:
            raise
        try:
            return check_signed_request(params, {appid: previous}, now_ms, explain=False)
        except Rejected:
            raise rejected from None


# What each documented endpoint does, once the call is verified and valid.
Action = Callable[[web.Request, World, str, Mapping[str, str]], Any]


def _exchange(request: web.Request, world: World, appid: str, params: Mapping[str, str]) -> Any:
    return world.exchange(appid, params)


def _user_info(request: web.Request, world: World, appid: str, params: Mapping[str, str]) -> Any:
    return world.user_info(appid, params["accessToken"])


def _trade(request: web.Request, world: World, appid: str, params: Mapping[str, str]) -> Any:
    created = world.create_trade(appid, params)
    deadline = world.trade(created["tradeNo"]).detail["timeExpire"]
    if deadline is not None:
        # Expire on time even if nobody asks, so the notification goes out as on the platform.
        delay_s = max(0.0, (deadline - world.clock.now_ms()) / 1000)
        trade = world.trade(created["tradeNo"])
        handle = asyncio.get_running_loop().call_later(delay_s, world.expire_if_due, trade)
        request.app[TIMERS].append(handle)
    return created


def _trade_detail(request: web.Request, world: World, appid: str, params: Mapping[str, str]) -> Any:
    return world.trade_detail(appid, params["tradeNo"])


def _trade_close(request: web.Request, world: World, appid: str, params: Mapping[str, str]) -> Any:
    return world.close_trade(appid, params["tradeNo"])


def _send_notify(request: web.Request, world: World, appid: str, params: Mapping[str, str]) -> Any:
    return world.send_notify(appid, params)


def _send_activity(
    request: web.Request, world: World, appid: str, params: Mapping[str, str]
) -> Any:
    return world.send_activity(appid, params)


ACTIONS: dict[str, Action] = {
    endpoints.ACCESS_TOKEN.path: _exchange,
    endpoints.USER_INFO.path: _user_info,
    endpoints.TRADE.path: _trade,
    endpoints.TRADE_DETAIL.path: _trade_detail,
    endpoints.TRADE_CLOSE.path: _trade_close,
    endpoints.SEND_NOTIFY.path: _send_notify,
    endpoints.SEND_ACTIVITY.path: _send_activity,
}


def add_openapi_routes(app: web.Application) -> None:
    app.router.add_route("*", "/neuopenapi/{tail:.*}", platform_call)
