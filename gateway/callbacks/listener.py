"""The listener facing the platform: payment callbacks verified, confirmed, stored, answered.

`POST /callbacks/{app}/pay` and nothing else is served there. A callback is checked (appid,
timestamp, sign and replay, when the app's `callbacks.verify_sign` is on), then confirmed
with the platform's own tradedetail, whose answer is the truth; only then is it written to
the outbox and answered 200. Anything that does not hold is refused and logged; nothing of it
is delivered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway import logs
from gateway.callbacks.delivery import DeliveryWorker
from gateway.callbacks.outbox import Outbox, OutboxError
from gateway.config.live import LiveConfig
from gateway.config.model import App
from gateway.config.schema import LimitsConfig
from gateway.core.clock import Clock
from gateway.core.errors import (
    BadSign,
    ConfirmUnavailable,
    ForeignTrade,
    GatewayError,
    InvalidParams,
    NotFinal,
    NotFound,
    OutboxUnavailable,
    Replayed,
    StatusMismatch,
    UnknownApp,
    UnknownTrade,
    envelope,
)
from gateway.core.flights import SingleFlight
from gateway.core.params import parse_json, parse_urlencoded
from gateway.core.platform import PROCESSING
from gateway.core.verification import MAX_SKEW_MS, Rejected, check_signed_request
from gateway.http.bodies import (
    read_capped,
    refuse_compressed,
    refuse_declared_size,
    send_continue,
)
from gateway.http.middlewares import close_if_unread, error_response, request_id_for
from gateway.metrics import NONE, Metrics
from gateway.upstream.client import Upstream
from gateway.upstream.details import answer_detail, base_url_for, trade_detail
from gateway.upstream.waits import TradeWaits

log = logs.logger("neu_gateway.callbacks")
MAX_CALLBACK_BYTES = 64 * 1024
# The doc's callback has seven fields; room for the platform to add some.
MAX_CALLBACK_FIELDS = 64
_STATUS = re.compile(r"[0-9]{1,3}")
# A sign is refused as a replay for as long as its timestamp could still be accepted.
REPLAY_WINDOW_S = 2 * MAX_SKEW_MS / 1000


@dataclass(frozen=True)
class CallbackContext:
    live: LiveConfig
    base_urls: dict[str, str]
    upstream: Upstream
    outbox: Outbox
    worker: DeliveryWorker
    waits: TradeWaits
    clock: Clock
    metrics: Metrics
    confirmations: SingleFlight[tuple[str, str, str | None], str] = field(
        default_factory=SingleFlight
    )


CONTEXT = web.AppKey("neu_callbacks", CallbackContext)


async def pay_callback(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    name = request.match_info["app"]
    # Read once: a reload while this callback is checked does not change its secret.
    config = context.live.current
    app = config.apps.get(name)
    # A label only for a configured app: the path's name is anyone's choice.
    label = NONE if app is None else app.name
    try:
        if app is None:
            raise UnknownApp("no such app")
        params = await _params(request, config.limits)
        try:
            accepted = await _accept(context, app, params)
        except OutboxError:
            log.exception("the outbox could not be written")
            raise OutboxUnavailable() from None
    except GatewayError as refusal:
        log.warning(
            "refused a payment callback for app %s: %s", logs.clipped(name, 64), refusal.msg
        )
        context.metrics.callbacks.labels(label, refusal.code).inc()
        response = error_response(refusal, request_id_for(request))
        close_if_unread(request, response)
        return response
    context.metrics.callbacks.labels(label, "accepted").inc()
    return web.json_response(envelope(200, accepted, response=True))


async def not_here(request: web.Request) -> web.Response:
    error = NotFound("only POST /callbacks/{app}/pay is served here")
    return error_response(error, request_id_for(request))


async def _params(request: web.Request, limits: LimitsConfig) -> dict[str, str]:
    refuse_compressed(request.headers)
    body = await read_capped(request, MAX_CALLBACK_BYTES, limits, "a callback's size")
    if request.content_type == "application/json":
        pairs = parse_json(body, MAX_CALLBACK_FIELDS)
    else:
        pairs = parse_urlencoded(body, "callback body", MAX_CALLBACK_FIELDS)
    # The platform may add fields over time: keep them all, first value of each.
    params: dict[str, str] = {}
    for key, value in pairs:
        params.setdefault(key, value)
    if not params.get("tradeNo"):
        raise InvalidParams("tradeNo is required")
    return params


async def _accept(context: CallbackContext, app: App, params: dict[str, str]) -> str:
    now = context.clock.now_ms() / 1000
    if app.callbacks.verify_sign:
        await _verify(context, app, params, now)
    trade_no = params["tradeNo"]
    claimed = params.get("transactionStatus")
    if (
        claimed is not None
        and _STATUS.fullmatch(claimed)
        and await context.outbox.holds(trade_no, int(claimed))
    ):
        # A retry of a callback already confirmed and stored: nothing more to do.
        state = "already accepted"
    else:
        # The platform's retries, or a replay, may bring the same callback many times at
        # once: one confirmation (one tradedetail) and one write answer them all.
        state, _ = await context.confirmations.run(
            (app.name, trade_no, claimed), lambda: _confirm_and_store(context, app, params, now)
        )
    if app.callbacks.verify_sign:
        await context.outbox.remember_sign(params["sign"], now, REPLAY_WINDOW_S)
    log.info("payment callback %s:%s for app %s %s", trade_no, claimed or "-", app.name, state)
    return state


async def _confirm_and_store(
    context: CallbackContext, app: App, params: dict[str, str], now: float
) -> str:
    """Asks the platform's tradedetail, whose answer is the truth; stores it if it holds."""
    trade_no = params["tradeNo"]
    try:
        base_url = base_url_for(context.base_urls, app)
        answer = await trade_detail(context.upstream, base_url, app, trade_no)
    except GatewayError:
        # Not the callback's fault: a non-2xx makes the platform send it again later.
        raise ConfirmUnavailable() from None
    detail = answer_detail(answer)
    if detail is None:
        raise UnknownTrade()
    if detail.get("appId") != app.appid:
        raise ForeignTrade()
    actual = detail.get("transactionStatus")
    claimed = params.get("transactionStatus")
    if claimed is not None and claimed != str(actual):
        raise StatusMismatch(
            f"callback says status {logs.clipped(claimed, 8)}, the platform says {actual}"
        )
    if not isinstance(actual, int) or actual == PROCESSING:
        raise NotFinal()
    payload = json.dumps(detail, ensure_ascii=False).encode()
    added = await context.outbox.add(app.name, trade_no, actual, payload, now)
    if added:
        context.worker.wake()
    context.waits.settle(app.name, trade_no, answer)
    return "accepted" if added else "already accepted"


async def _verify(context: CallbackContext, app: App, params: dict[str, str], now: float) -> None:
    try:
        check_signed_request(
            params, {app.appid: app.secret.reveal()}, int(now * 1000), explain=False
        )
    except Rejected as rejected:
        raise BadSign(rejected.msg) from None
    if await context.outbox.sign_seen(params["sign"], now):
        raise Replayed()


async def expect_callback(request: web.Request) -> web.Response | None:
    """Refuses a callback that is too large or compressed before its body is sent."""
    try:
        refuse_compressed(request.headers)
        refuse_declared_size(request, MAX_CALLBACK_BYTES, "a callback's size")
        await send_continue(request)
    except GatewayError as exc:
        response = error_response(exc, request_id_for(request))
        response.force_close()
        return response
    return None


def create_callbacks_app(
    context: CallbackContext, handler_args: dict[str, Any] | None = None
) -> web.Application:
    app = web.Application(client_max_size=MAX_CALLBACK_BYTES, handler_args=handler_args)
    app[CONTEXT] = context
    app.router.add_route(
        "POST", "/callbacks/{app}/pay", pay_callback, expect_handler=expect_callback
    )
    app.router.add_route("*", "/{tail:.*}", not_here)
    return app
