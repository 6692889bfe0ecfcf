"""Whether a request may go any further, decided before its body is read.

In order: the method, the caller (401), its rate (429), its requests in flight (429), the app
(404, 403; `X-Neu-App`, else `default_app`, else the caller's only app, else 400), the path
(400), the caller's route rights (403), the endpoint's method (405), and the body's encoding
(415). The same checks run when a caller asks `Expect: 100-continue`, so a refused upload is
refused before it is sent.

A request counts as in flight from the moment its caller's count admits it until its answer
is sent, whatever happens to it in between.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web

from gateway.config.model import App, Config
from gateway.config.schema import LimitsConfig
from gateway.core.access import Caller, caller_for
from gateway.core.endpoints import ENDPOINTS, Endpoint
from gateway.core.errors import (
    AppRequired,
    Forbidden,
    InvalidPath,
    MethodNotAllowed,
    Unauthenticated,
    UnknownApp,
    UnknownEndpoint,
    quoted_name,
)
from gateway.core.headers import APP_HEADER
from gateway.core.platform import API_PREFIX
from gateway.egress.keys import CALLER_RATES, IN_FLIGHT
from gateway.http.bodies import refuse_compressed
from gateway.http.keys import APP_NAME, CALLER_NAME, ROUTE, config_of
from gateway.metrics import route_label

# Platform paths are plain words; anything encoded, dotted or empty is refused, not normalised.
_SEGMENT = r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*"
_PLAIN_SEGMENTS = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")


# Made per request: slots, and not frozen, whose __init__ costs four times as much.
@dataclass(slots=True)
class Admitted:
    caller: str
    app: App
    path: str
    endpoint: Endpoint | None


# What admit() found, kept on the request when it ran at Expect: 100-continue.
ADMITTED = web.RequestKey("neu_admitted", Admitted)


async def admit(request: web.Request) -> Admitted:
    if request.method not in ("GET", "POST"):
        documented = ENDPOINTS.get(request.rel_url.raw_path)
        # Allow names what this path takes: a documented endpoint one method, any other both.
        raise MethodNotAllowed(
            headers={"Allow": documented.method} if documented is not None else None
        )
    config = config_of(request)
    # Known before the caller is: a refused request is logged and counted under its route.
    request[ROUTE] = route_label(request.rel_url.raw_path)
    caller = caller_for(
        config.callers,
        config.trusted_networks,
        request.headers.get("Authorization"),
        request.remote,
    )
    if caller is None:
        raise Unauthenticated()
    name = caller.name if isinstance(caller, Caller) else caller
    request[CALLER_NAME] = name
    if isinstance(caller, Caller) and caller.rate is not None:
        # Before anything else is looked at: a caller over its rate costs little.
        await request.app[CALLER_RATES].check(caller)
    hold_in_flight(request, caller, name, config.limits)
    app = choose_app(config, request.headers.get(APP_HEADER), caller)
    request[APP_NAME] = app.name
    path = checked_path(request.raw_path)
    if isinstance(caller, Caller) and not caller.may_call(request.method, path):
        raise Forbidden(f"caller {quoted_name(name)} may not call {request.method} {path}")
    endpoint = ENDPOINTS.get(path)
    if endpoint is None and config.strict_endpoints:
        raise UnknownEndpoint(
            f"{path} is not a documented platform endpoint, and strict_endpoints is on"
        )
    if endpoint is not None and request.method != endpoint.method:
        raise MethodNotAllowed(
            f"{path} takes {endpoint.method}, not {request.method}",
            headers={"Allow": endpoint.method},
        )
    refuse_compressed(request.headers)
    return Admitted(name, app, path, endpoint)


def hold_in_flight(
    request: web.Request, caller: Caller | str, name: str, limits: LimitsConfig
) -> None:
    """Counts the request in its caller's requests in flight, or refuses it (429) at the
    caller's max_in_flight. Requests without a token count as one caller, under the default."""
    configured = isinstance(caller, Caller)
    own = caller.max_in_flight if isinstance(caller, Caller) else None
    limit = limits.default_max_in_flight if own is None else own
    request.app[IN_FLIGHT].hold(name, configured, limit, own is not None)


def choose_app(config: Config, requested: str | None, caller: Caller | str) -> App:
    if requested is not None:
        app = config.apps.get(requested.strip())
        if app is None:
            raise UnknownApp(
                f"unknown app {quoted_name(requested)} in {APP_HEADER}; "
                f"yours: {', '.join(_usable(config, caller)) or 'none'}"
            )
    elif config.default_app is not None:
        app = config.apps[config.default_app]
    elif isinstance(caller, Caller) and len(caller.apps) == 1:
        # A caller with one app has nothing to choose: asking it to name the app anyway
        # only breaks its calls when a second app is added for someone else.
        (only,) = caller.apps
        app = config.apps[only]
    else:
        raise AppRequired(
            f"several apps are configured and none is the default: send header {APP_HEADER} "
            f"with one of {', '.join(_usable(config, caller)) or 'none'}"
        )
    if isinstance(caller, Caller) and not caller.may_use(app.name):
        raise Forbidden(
            f"caller {quoted_name(caller.name)} may not use app {quoted_name(app.name)}"
        )
    return app


def _usable(config: Config, caller: Caller | str) -> list[str]:
    """The apps the caller may use, for an error message."""
    return [name for name in config.apps if not isinstance(caller, Caller) or caller.may_use(name)]


def checked_path(raw_target: str) -> str:
    """The request path if it is a plain /neuopenapi/... path, else InvalidPath."""
    if not raw_target.startswith("/"):
        raise InvalidPath("absolute-form request targets are refused: this is not a forward proxy")
    path = raw_target.split("?", 1)[0]
    if _PLAIN_SEGMENTS.fullmatch(path.removeprefix(API_PREFIX)) is None:
        raise InvalidPath()
    return path
