"""The listener's server and runner: aiohttp's, making GuardedRequestHandlers, counting their
connections, and making room at limits.max_connections (see `connections`)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway import logs
from gateway.core.errors import GatewayError
from gateway.http.aiohttp_server import RunnerBase, protocol_options
from gateway.http.client_waits import REFUSED, WAITING_ON
from gateway.http.connections import ConnectionLimits, GuardedRequestHandler
from gateway.http.dispatch import ServerHandler, dispatcher
from gateway.http.middlewares import answering_before_the_chain, gateway_middleware
from gateway.http.refusals import log_refused

log = logs.logger("neu_gateway.listener")
SUMMARY_EVERY_S = 60


class Summary:
    """Connections closed to make room (or refused) at limits.max_connections: each counted
    (`on_counted`, for metrics), the first logged at once and the rest once every
    SUMMARY_EVERY_S while they go on. A line each made hundreds in a flood of silent
    connections, drowning what else the log had to say."""

    def __init__(self, max_connections: int, on_counted: Callable[[str], None]) -> None:
        self._max_connections = max_connections
        self._on_counted = on_counted
        self._counts: collections.Counter[str] = collections.Counter()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, state: str) -> None:
        self._on_counted(WAITING_ON[state])
        if self._timer is not None:
            self._counts[state] += 1
            return
        log.info(
            "limits.max_connections (%d) reached: %s (more are counted in "
            "neu_gateway_connections_evicted_total and summed up here every %ds)",
            self._max_connections,
            _what_was_done(state, 1),
            SUMMARY_EVERY_S,
        )
        self._timer = asyncio.get_running_loop().call_later(SUMMARY_EVERY_S, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if not self._counts:
            return
        log.info(
            "limits.max_connections (%d) reached, in the last %ds: %s",
            self._max_connections,
            SUMMARY_EVERY_S,
            "; ".join(_what_was_done(state, count) for state, count in self._counts.items()),
        )
        self._counts.clear()
        self._timer = asyncio.get_running_loop().call_later(SUMMARY_EVERY_S, self._flush)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _what_was_done(state: str, count: int) -> str:
    if state == REFUSED:
        return f"refused {count} new connection(s) with 503, every open one busy with a request"
    return f"closed {count} connection(s) waiting longest on their client ({state})"


class GuardedServer(web.Server):
    """aiohttp's server, making GuardedRequestHandlers and counting their connections."""

    def __init__(
        self,
        server: web.Server,
        limits: ConnectionLimits,
        on_refused: Callable[[int], None] | None = None,
        request_handler: ServerHandler | None = None,
        log_refusals: bool = True,
        on_evicted: Callable[[str], None] | None = None,
        on_connections: Callable[[int], None] | None = None,
    ) -> None:
        # Told each connection counted in (+1) and out (-1): the open connections' gauge.
        self._on_connections = on_connections or (lambda change: None)
        # Told the status of each request refused before it reached a handler (metrics).
        self.on_refused = on_refused or (lambda status: None)
        # Told what each connection closed (or refused) to make room was waiting on, as the
        # metric's label (connections.WAITING_ON).
        self.summary = Summary(limits.max_connections, on_evicted or (lambda state: None))
        # Whether such a request gets an access line (the gateway's listeners, not the
        # sandbox's).
        self.log_refusals = log_refusals
        super().__init__(
            request_handler or server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            **protocol_options(server),
        )
        self._limits = limits
        self._open: set[GuardedRequestHandler] = set()
        self._accepted = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def opened(self, handler: GuardedRequestHandler) -> bool:
        """Counts the new connection in; False if there is no room for it.

        At the cap, the connection that has waited longest on its client gives way (see
        `waiting_on_client_since`), so clients holding connections open idle or slowly cannot
        lock out ones that ask promptly; only when every connection is busy with a request is
        the new one refused.
        """
        self._accepted += 1
        handler.client_waits.serial = self._accepted
        self._open.add(handler)
        self._on_connections(1)
        if len(self._open) <= self._limits.max_connections:
            return True
        waiting = [
            (since, other)
            for other in self._open
            if other is not handler and (since := other.waiting_on_client_since()) is not None
        ]
        if not waiting:
            return False
        (_, _, state), victim = min(waiting, key=lambda item: item[0])
        self.summary.add(state)
        victim.evict(state)
        return True

    def closed(self, handler: GuardedRequestHandler) -> None:
        if handler in self._open:
            self._open.discard(handler)
            self._on_connections(-1)

    def refused(self, error: GatewayError, request_id: str) -> None:
        """A request the listener answered itself, before any handler: counted, and given
        an access line where this listener logs them."""
        if self.log_refusals:
            log_refused(request_id, error)
        self.on_refused(error.status)

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - aiohttp's signature
        self.summary.close()
        await super().shutdown(timeout)

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, limits=self._limits, **protocol_options(self))


class GuardedRunner(RunnerBase):
    """An AppRunner whose connections are guarded by `limits`."""

    def __init__(
        self,
        app: web.Application,
        limits: ConnectionLimits,
        on_refused: Callable[[int], None] | None = None,
        log_refusals: bool = True,
        on_evicted: Callable[[str], None] | None = None,
        on_connections: Callable[[int], None] | None = None,
        # aiohttp's AppRunner options and handler arguments, passed on as aiohttp types them.
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("access_log", None)
        # A handler whose client went away is cancelled: it would otherwise hold its request
        # (a parsed body, a trade wait) for as long as it takes, with no one to answer.
        kwargs.setdefault("handler_cancellation", True)
        super().__init__(app, **kwargs)
        self._limits = limits
        self._on_refused = on_refused
        self._log_refusals = log_refusals
        self._on_evicted = on_evicted
        self._on_connections = on_connections

    def wrap_server(self, server: web.Server) -> web.Server:
        routed = server.request_handler
        if gateway_middleware in self.app.middlewares:
            # Only the router's way runs expect handlers ahead of the middlewares: the proxy's
            # shortcut (dispatcher) stays one call deep.
            routed = answering_before_the_chain(routed)
        handler = dispatcher(self.app, routed)
        return GuardedServer(
            server,
            self._limits,
            self._on_refused,
            handler,
            self._log_refusals,
            self._on_evicted,
            self._on_connections,
        )
