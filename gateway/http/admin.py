"""The operator's endpoints: /healthz (alive), /readyz (worth sending traffic to), /metrics.

They sit outside /neuopenapi/, are never proxied and need no caller token; `admin.listen`
moves them to a listener of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.core.clock import Clock, within
from gateway.core.errors import NotReady, envelope
from gateway.metrics import CONTENT_TYPE, Metrics

# A backend that takes longer than this to answer a ping counts as down.
CHECK_TIMEOUT_S = 1.0
Check = Callable[[], Awaitable[None]]


class Unusable(Exception):
    """A check's finding that its backend cannot be used, with the reason written for
    /readyz (no secret, no path), which is shown as it is."""


class Readiness:
    """Whether this process should get new requests: not while draining, nor while a backend
    it needs is down. Each check raises when its backend is not usable."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._checks: dict[str, Check] = {}
        self.draining = False

    def add_check(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def remove_check(self, name: str) -> None:
        self._checks.pop(name, None)

    async def report(self) -> dict[str, str]:
        """Each check's state: `ok`, or why not."""
        states = {}
        for name, check in self._checks.items():
            try:
                await within(self._clock, CHECK_TIMEOUT_S, check())
            except TimeoutError:
                states[name] = f"no answer within {CHECK_TIMEOUT_S:g} s"
            except Unusable as exc:
                states[name] = f"unavailable ({exc})"
            except Exception as exc:
                states[name] = f"unavailable ({type(exc).__name__})"
            else:
                states[name] = "ok"
        return states


def admin_routes(readiness: Readiness, metrics: Metrics) -> list[web.RouteDef]:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response(envelope(200, "OK", response={"status": "ok"}))

    async def readyz(request: web.Request) -> web.Response:
        checks = await readiness.report()
        problems = [f"{name}: {state}" for name, state in checks.items() if state != "ok"]
        if readiness.draining:
            problems.insert(0, "draining: the gateway is shutting down")
        if problems:
            error = NotReady("not ready: " + "; ".join(problems))
            body = envelope(
                error.status,
                error.msg,
                error.code,
                response={"status": "not_ready", "checks": checks},
            )
            return web.json_response(body, status=error.status)
        return web.json_response(
            envelope(200, "OK", response={"status": "ready", "checks": checks})
        )

    async def metrics_text(request: web.Request) -> web.Response:
        response = web.Response(body=await metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    return [
        web.get("/healthz", healthz, allow_head=True),
        web.get("/readyz", readyz, allow_head=True),
        web.get("/metrics", metrics_text),
    ]
