"""What the sandbox's HTTP modules share: its typed app state, how a /sandbox/ control reads
its parameters and answers, and what the process embedding a sandbox may ask of it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.core.errors import envelope
from gateway.core.verification import Rejected
from gateway.sandbox.events import Events
from gateway.sandbox.notifier import Notifier
from gateway.sandbox.world import World

WORLD = web.AppKey("sandbox_world", World)
NOTIFIER = web.AppKey("sandbox_notifier", Notifier)
EVENTS = web.AppKey("sandbox_events", Events)
TIMERS = web.AppKey("sandbox_timers", list[asyncio.TimerHandle])
# How long a rotated-out secret is still accepted, by default.
DEFAULT_KEEP_PREVIOUS_S = 300.0


async def control_params(request: web.Request) -> dict[str, str]:
    """A control call's parameters from the query and a form or JSON body, for curl's sake."""
    params = {key: value for key, value in request.query.items()}
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise Rejected(400, "the JSON body cannot be parsed") from None
        if not isinstance(body, dict):
            raise Rejected(400, "the JSON body must be an object")
        params.update(
            {
                str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in body.items()
            }
        )
    elif request.body_exists:
        # Text fields only: a file part is no control value.
        form = await request.post()
        params.update({key: value for key, value in form.items() if isinstance(value, str)})
    return params


def appid_of(world: World, params: Mapping[str, str]) -> str:
    """The app a control names (`appid`), or the only one registered."""
    appid = params.get("appid") or (next(iter(world.secrets)) if len(world.secrets) == 1 else "")
    if not appid:
        raise Rejected(400, "appid is required: several apps are registered")
    return appid


def ok(response: Any) -> web.Response:
    """A control's answer: the platform's envelope, status 200."""
    return web.json_response(envelope(200, "OK", response=response))


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
