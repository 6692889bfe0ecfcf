"""The operator's endpoints: /healthz (alive), /readyz (worth sending traffic to), /metrics.

/readyz is about this process (Kubernetes' own guidance: a readiness probe that checks a
shared dependency takes every replica out together when it fails): it is 503 while the
process starts or drains, or a check of its own fails. The backends replicas share (the
cache's Redis, the outbox) are checked and reported beside them, and only make it 503 when
`admin.ready_requires` names them.

They sit outside /neuopenapi/, are never proxied and need no caller token; `admin.listen`
moves them to a listener of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.core.clock import Clock, within
from gateway.core.errors import NotReady, envelope
from gateway.metrics import CONTENT_TYPE, Metrics

# A backend that takes longer than this to answer a ping counts as down.
CHECK_TIMEOUT_S = 1.0
# How long /readyz waits for a check it does not require (a shared backend): well within a
# probe's timeout (Kubernetes' default is 1 s), so a backend that hangs rather than refuses
# cannot fail the probe of every replica at once. The check goes on, for its gauge.
REPORT_WAIT_S = 0.25
OK = "ok"
Check = Callable[[], Awaitable[None]]


class Unusable(Exception):
    """A check's finding that its backend cannot be used, with the reason written for
    /readyz (no secret, no path), which is shown as it is."""


Outcome = Callable[[bool], None]


@dataclass(frozen=True)
class _Check:
    probe: Check
    # Whether its backend down makes this process unready, or is only reported.
    required: bool
    # Told whether the backend was usable, after each time it is asked (a gauge).
    on_outcome: Outcome | None


class Readiness:
    """Whether this process should get new requests: not while it starts, nor while it
    drains, nor while a check it requires fails. Each check raises when its backend is not
    usable; a check not required (a backend the replicas share) is reported, no more."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._checks: dict[str, _Check] = {}
        # Each check being asked: one ping at a time, whoever asks (probes, scrapes).
        self._asking: dict[str, asyncio.Future[str]] = {}
        # Until every resource the app owns is open (runtime/app.py says when).
        self.starting = True
        self.draining = False

    def add_check(
        self, name: str, check: Check, required: bool = True, on_outcome: Outcome | None = None
    ) -> None:
        self._checks[name] = _Check(check, required, on_outcome)

    def remove_check(self, name: str) -> None:
        self._checks.pop(name, None)

    def started(self) -> None:
        self.starting = False

    async def state(self, name: str) -> str:
        """One check's state: `ok`, or why not (its outcome told to whoever asked to be).
        Asked while it is being asked, it waits for the same answer."""
        asking = self._asking.get(name)
        if asking is None:
            asking = self._asking[name] = asyncio.ensure_future(self._ask(name))
            asking.add_done_callback(lambda done: self._asked(name, done))
        # Shielded: one who stops waiting does not stop the others' ping.
        return await asyncio.shield(asking)

    def _asked(self, name: str, done: asyncio.Future[str]) -> None:
        if self._asking.get(name) is done:
            del self._asking[name]

    async def _ask(self, name: str) -> str:
        check = self._checks[name]
        try:
            await within(self._clock, CHECK_TIMEOUT_S, check.probe())
        except TimeoutError:
            state = f"no answer within {CHECK_TIMEOUT_S:g} s"
        except Unusable as exc:
            state = f"unavailable ({exc})"
        except Exception as exc:
            state = f"unavailable ({type(exc).__name__})"
        else:
            state = OK
        if check.on_outcome is not None:
            check.on_outcome(state == OK)
        return state

    async def report(self) -> dict[str, str]:
        """Each check's state: `ok`, or why not; all asked at once."""
        names = list(self._checks)
        states = await asyncio.gather(*(self._reported(name) for name in names))
        return dict(zip(names, states, strict=True))

    async def _reported(self, name: str) -> str:
        if self._checks[name].required:
            return await self.state(name)
        try:
            return await within(self._clock, REPORT_WAIT_S, self.state(name))
        except TimeoutError:
            return (
                f"no answer within {REPORT_WAIT_S:g} s (still asked, up to {CHECK_TIMEOUT_S:g} s)"
            )

    def problems(self, states: dict[str, str]) -> list[str]:
        """Why this process is not ready (none: it is), given its checks' `states`."""
        problems = []
        if self.starting:
            problems.append("starting: not serving yet")
        if self.draining:
            problems.append("draining: the gateway is shutting down")
        for name, state in states.items():
            check = self._checks.get(name)
            if state != OK and check is not None and check.required:
                problems.append(f"{name}: {state}")
        return problems


def admin_routes(readiness: Readiness, metrics: Metrics) -> list[web.RouteDef]:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response(envelope(200, "OK", response={"status": "ok"}))

    async def readyz(request: web.Request) -> web.Response:
        checks = await readiness.report()
        problems = readiness.problems(checks)
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
