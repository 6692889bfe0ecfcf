"""Faults a test sets on an OpenAPI path: a delay, an HTTP status, a connection reset or a
hang, for the next `times` calls or until cleared; and the /sandbox/faults controls."""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import asdict, dataclass

from aiohttp import web

from gateway.core.errors import envelope
from gateway.core.verification import Rejected
from gateway.sandbox.controls import WORLD, control_params, ok

TRUE_WORDS = ("1", "true", "yes")


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


async def faulted_answer(request: web.Request) -> web.StreamResponse | None:
    """What a fault set on the request's path makes of it: an answer, a dropped connection
    (CancelledError), or None when the call goes on (after any delay or hang)."""
    fault = request.app[FAULTS].take(request.path)
    if fault is None:
        return None
    _log_fault(request, fault)
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    if fault.hang:
        await request.app[FAULTS].hang()
    if fault.reset:
        _reset_connection(request)
        raise asyncio.CancelledError
    if fault.status is not None:
        return web.json_response(
            envelope(fault.status, "fault injected by /sandbox/faults"), status=fault.status
        )
    return None


def _reset_connection(request: web.Request) -> None:
    """Closes the connection with a TCP RST (linger 0), as a crashed server's kernel would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


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


async def set_fault(request: web.Request) -> web.Response:
    """POST /sandbox/faults: path, and delay_s, status, reset, hang, times."""
    params = await control_params(request)
    path = params.get("path", "")
    if not path.startswith("/neuopenapi/"):
        raise Rejected(400, "path is required: an OpenAPI path such as /neuopenapi/...")
    try:
        fault = Fault(
            delay_s=float(params.get("delay_s") or 0),
            status=int(params["status"]) if params.get("status") else None,
            reset=params.get("reset", "").lower() in TRUE_WORDS,
            hang=params.get("hang", "").lower() in TRUE_WORDS,
            times=int(params["times"]) if params.get("times") else None,
        )
    except ValueError:
        raise Rejected(400, "delay_s must be a number; status and times whole numbers") from None
    request.app[FAULTS].by_path[path] = fault
    return ok({"path": path, **asdict(fault)})


async def clear_faults(request: web.Request) -> web.Response:
    """DELETE /sandbox/faults: every fault, or the one on ?path=."""
    request.app[FAULTS].clear(request.query.get("path"))
    return ok(True)


def add_fault_routes(app: web.Application) -> None:
    app[FAULTS] = Faults()
    app.router.add_post("/sandbox/faults", set_fault)
    app.router.add_delete("/sandbox/faults", clear_faults)
