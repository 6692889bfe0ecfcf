"""The listener facing the platform: payment callbacks verified, confirmed, stored, answered.

`POST /callbacks/{app}/pay` and nothing else is served there. A callback is checked (appid,
timestamp, sign and replay, when the app's `callbacks.verify_sign` is on), then confirmed
with the platform's own tradedetail, whose answer is the truth; only then is it written to
the outbox and answered 200. Anything that does not hold is refused and logged; nothing of it
is delivered.

Its answers go through the gateway's error middleware, as the callers' listener's do: the same
envelope for a refusal, the same X-Request-Id, the same access line (route
`/callbacks/{app}/pay`, app the configured app's name).
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
from gateway.http.keys import APP_NAME, CLOCK, LIVE_CONFIG, METRICS, ROUTE, config_of
from gateway.http.middlewares import (
    error_response,
    gateway_middleware,
    log_access,
    request_id_for,
)
from gateway.metrics import NONE, Metrics
from gateway.upstream.client import Upstream
from gateway.upstream.details import answer_detail, base_url_for, trade_detail
from gateway.upstream.waits import TradeWaits

log = logs.logger("neu_gateway.callbacks")
PAY_ROUTE = "/callbacks/{app}/pay"
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
    app = _named_app(request)
    label = request[APP_NAME]
    try:
        if app is None:
            raise UnknownApp("no such app")
        params = await _params(request, config_of(request).limits)
        try:
            accepted = await _accept(context, app, params)
        except OutboxError as exc:
            # Expected through a Redis failover or while replicas lag: one line, no traceback.
            log.warning(
                "the outbox could not take a callback (%s); answered 503, the platform sends "
                "it again",
                exc,
            )
            raise OutboxUnavailable() from None
    except GatewayError as refusal:
        log.warning(
            "refused a payment callback for app %s: %s", logs.clipped(name, 64), refusal.msg
        )
        context.metrics.callbacks.labels(label, refusal.code).inc()
        raise
    context.metrics.callbacks.labels(label, "accepted").inc()
    return web.json_response(envelope(200, accepted, response=True))


def _named_app(request: web.Request) -> App | None:
    """The configured app the path names, if any, in the config the request started with (a
    reload while a callback is checked changes no secret); the request is labelled with it
    for the access line. Only a configured app's name is a label: the path is anyone's."""
    app = config_of(request).apps.get(request.match_info["app"])
    request[ROUTE], request[APP_NAME] = PAY_ROUTE, NONE if app is None else app.name
    return app


async def not_here(request: web.Request) -> web.Response:
    raise NotFound(f"only POST {PAY_ROUTE} is served here")


async def no_continue(request: web.Request) -> None:
    """Expect on a path not served: no 100 Continue (the body would be dropped unread), and
    any expectation is answered by the 404 itself, through the middleware (RFC 9110 10.1.1
    lets a server answer with a final status instead). aiohttp's own handler would invite
    the body, or answer an unknown expectation in plain text outside the middleware."""


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
        # Middlewares do not run for an answer given here, so it is rendered and logged here,
        # as the callers' listener does for its own Expect.
        request_id = request_id_for(request)
        response = error_response(exc, request_id)
        response.force_close()
        _named_app(request)
        log_access(request, request_id, exc.status, 0.0, response)
        return response
    return None


def create_callbacks_app(
    context: CallbackContext, handler_args: dict[str, Any] | None = None
) -> web.Application:
    app = web.Application(
        middlewares=[gateway_middleware],
        client_max_size=MAX_CALLBACK_BYTES,
        handler_args=handler_args,
    )
    app[CONTEXT] = context
    # What the error middleware and the access line read.
    app[LIVE_CONFIG] = context.live
    app[CLOCK] = context.clock
    app[METRICS] = context.metrics
    app.router.add_route("POST", PAY_ROUTE, pay_callback, expect_handler=expect_callback)
    app.router.add_route("*", "/{tail:.*}", not_here, expect_handler=no_continue)
    return app
