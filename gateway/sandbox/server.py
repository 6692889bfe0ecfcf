"""The sandbox's HTTP surface: the platform's OpenAPI under /neuopenapi/, controls under /sandbox/.

Like the platform, an OpenAPI call answers HTTP 200 and puts its outcome in
`responseHeader.status`; the /sandbox/ controls answer with that status on the wire too.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import socket
import struct
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import IO, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.core.clock import Clock, SystemClock
from gateway.core.endpoints import ENDPOINTS, Endpoint, validate
from gateway.core.errors import InvalidParams, envelope
from gateway.core.params import joined, parse_urlencoded
from gateway.core.verification import Rejected, check_signed_request
from gateway.sandbox.controls import EVENTS, NOTIFIER, TIMERS, WORLD, control_params
from gateway.sandbox.events import Events
from gateway.sandbox.notifier import Notifier
from gateway.sandbox.origin import own_page_only
from gateway.sandbox.simulator import add_simulator_routes
from gateway.sandbox.world import Settings, World
from gateway.sandbox.world import trade_view as world_trade_view

ECHO_PATH = "/neuopenapi/sandbox/echo"
MAX_BODY_BYTES = 256 * 1024 * 1024
# How long a rotated-out secret is still accepted, by default.
DEFAULT_KEEP_PREVIOUS_S = 300.0
MAX_KEEP_PREVIOUS_S = 86400.0


@dataclass
class Fault:
    delay_s: float = 0.0
    status: int | None = None
    reset: bool = False
    hang: bool = False
    times: int | None = None


class Faults:
    """Per-path faults for tests: delay, an HTTP status, a connection reset, or a hang."""

    def __init__(self) -> None:
        self.by_path: dict[str, Fault] = {}
        self._release = asyncio.Event()
        # Requests held by a hang fault right now, so tests can wait until they all are.
        self.hanging = 0

    def take(self, path: str) -> Fault | None:
        fault = self.by_path.get(path)
        if fault is not None and fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                del self.by_path[path]
        return fault

    async def hang(self) -> None:
        self.hanging += 1
        try:
            await self._release.wait()
        finally:
            self.hanging -= 1

    def clear(self, path: str | None = None) -> None:
        if path is None:
            self.by_path.clear()
        else:
            self.by_path.pop(path, None)
        # Hanging requests end when their fault is cleared.
        self._release.set()
        self._release = asyncio.Event()


FAULTS = web.AppKey("sandbox_faults", Faults)


def _is_platform_path(request: web.Request) -> bool:
    return request.path.startswith("/neuopenapi/")


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
        if _is_platform_path(request):
            fault = request.app[FAULTS].take(request.path)
            if fault is not None:
                _log_fault(request, fault)
                faulted = await _apply(fault, request)
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
    http_status = 200 if _is_platform_path(request) else status
    return web.json_response(envelope(status, msg), status=http_status)


def _log_fault(request: web.Request, fault: Fault) -> None:
    """A call a fault answers or drops goes into the request log (as it is taken: a reset
    leaves no later moment); one a fault only delays is logged as it is answered."""
    if fault.status is None and not fault.reset:
        return
    what = [
        *([f"delay {fault.delay_s:g} s"] if fault.delay_s else []),
        *(["hang"] if fault.hang else []),
        *(["connection reset"] if fault.reset else []),
        *([f"HTTP {fault.status}"] if fault.status is not None else []),
    ]
    request.app[WORLD].record_call(
        request.method,
        request.path,
        {},
        fault.status or 0,
        "fault injected by /sandbox/faults: " + (", ".join(what) or "none"),
        verdict="fault",
    )


async def _apply(fault: Fault, request: web.Request) -> web.StreamResponse | None:
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    if fault.hang:
        await request.app[FAULTS].hang()
    if fault.reset:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        raise asyncio.CancelledError
    if fault.status is not None:
        return web.json_response(
            envelope(fault.status, "fault injected by /sandbox/faults"), status=fault.status
        )
    return None


async def _platform_params(request: web.Request) -> tuple[dict[str, str], list[dict[str, Any]]]:
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
    "/neuopenapi/oauth/mini/accessToken": _exchange,
    "/neuopenapi/oauth/mini/user/info": _user_info,
    "/neuopenapi/pay/transactions/trade": _trade,
    "/neuopenapi/pay/transactions/tradedetail": _trade_detail,
    "/neuopenapi/pay/transactions/tradeclose": _trade_close,
    "/neuopenapi/notify/sendNotify": _send_notify,
    "/neuopenapi/activity/sendActivity": _send_activity,
}


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
    params, files = await _platform_params(request)
    received.update(params)
    appid = _signed_by(world, params)
    if endpoint is None:
        echoed = {key: value for key, value in params.items() if key != "sign"}
        return envelope(200, "OK", response={"params": echoed, "files": files})
    problems = validate(endpoint, params)
    if problems:
        raise Rejected(400, "invalid parameters: " + "; ".join(problems))
    return envelope(200, "OK", response=ACTIONS[endpoint.path](request, world, appid, params))


async def login(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    params = await control_params(request)
    appid = params.get("appid") or (next(iter(world.secrets)) if len(world.secrets) == 1 else "")
    if not appid:
        raise Rejected(400, "appid is required: several apps are registered")
    return web.json_response(
        envelope(200, "OK", response=world.login(appid, params.get("user", "")))
    )


async def pay(request: web.Request) -> web.Response:
    params = await control_params(request)
    reason = params.get("failReasonType")
    if reason is not None and not reason.lstrip("-").isdigit():
        raise Rejected(400, "failReasonType must be a number from the doc's table")
    detail = request.app[WORLD].pay(
        request.match_info["trade_no"],
        params.get("result", ""),
        int(reason) if reason is not None else None,
    )
    return web.json_response(envelope(200, "OK", response=detail))


async def trade_view(request: web.Request) -> web.Response:
    trade = request.app[WORLD].trade(request.match_info["trade_no"])
    return web.json_response(envelope(200, "OK", response=world_trade_view(trade)))


async def inbox(request: web.Request) -> web.Response:
    return web.json_response(
        envelope(200, "OK", response=request.app[WORLD].inbox(request.match_info["open_id"]))
    )


async def set_fault(request: web.Request) -> web.Response:
    params = await control_params(request)
    path = params.get("path", "")
    if not path.startswith("/neuopenapi/"):
        raise Rejected(400, "path is required: an OpenAPI path such as /neuopenapi/...")
    try:
        fault = Fault(
            delay_s=float(params.get("delay_s") or 0),
            status=int(params["status"]) if params.get("status") else None,
            reset=params.get("reset", "").lower() in ("1", "true", "yes"),
            hang=params.get("hang", "").lower() in ("1", "true", "yes"),
            times=int(params["times"]) if params.get("times") else None,
        )
    except ValueError:
        raise Rejected(400, "delay_s must be a number; status and times whole numbers") from None
    request.app[FAULTS].by_path[path] = fault
    return web.json_response(envelope(200, "OK", response={"path": path, **fault.__dict__}))


async def clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].clear(request.query.get("path"))
    return web.json_response(envelope(200, "OK", response=True))


def _signed_by(world: World, params: Mapping[str, str]) -> str:
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
    return web.json_response(envelope(200, "OK", response=True))


def sandbox_appids(sandbox: web.Application) -> frozenset[str]:
    """The appids a running sandbox knows."""
    return frozenset(sandbox[WORLD].secrets)


def set_secret(
    sandbox: web.Application,
    appid: str,
    secret: str,
    keep_previous_s: float = DEFAULT_KEEP_PREVIOUS_S,
) -> None:
    """Rotates an app's secret in a running sandbox (its control endpoint, or a reload of
    the gateway that embeds it)."""
    sandbox[WORLD].rotate(appid, secret, keep_previous_s)
    sandbox[NOTIFIER].set_secret(appid, secret)


async def reset(request: web.Request) -> web.Response:
    request.app[WORLD].reset()
    request.app[FAULTS].clear()
    return web.json_response(envelope(200, "OK", response=True))


async def stats(request: web.Request) -> web.Response:
    return web.json_response(
        envelope(
            200,
            "OK",
            response={
                "calls": dict(request.app[WORLD].calls),
                "hanging": request.app[FAULTS].hanging,
            },
        )
    )


# Above any gateway's header limits, so what a gateway forwards is judged by the platform's
# rules, not refused in plain text for its length.
MAX_LINE_BYTES = 1 << 16


def create_sandbox_app(
    secrets: Mapping[str, str], settings: Settings | None = None, clock: Clock | None = None
) -> web.Application:
    """The sandbox for these apps (appid -> secret)."""
    settings = settings or Settings()
    clock = OffsetClock(clock or SystemClock(), settings.clock_offset_s)
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
    app[FAULTS] = Faults()
    app[TIMERS] = []
    app.cleanup_ctx.append(_lifetime)
    app.router.add_route("*", "/neuopenapi/{tail:.*}", platform_call)
    app.router.add_post("/sandbox/login", login)
    app.router.add_post("/sandbox/trades/{trade_no}/pay", pay)
    app.router.add_get("/sandbox/trades/{trade_no}", trade_view)
    app.router.add_get("/sandbox/inbox/{open_id}", inbox)
    app.router.add_post("/sandbox/faults", set_fault)
    app.router.add_delete("/sandbox/faults", clear_faults)
    app.router.add_post("/sandbox/reset", reset)
    app.router.add_post("/sandbox/apps/{appid}/secret", rotate_secret)
    app.router.add_get("/sandbox/stats", stats)
    add_simulator_routes(app)
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
