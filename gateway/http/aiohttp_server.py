"""aiohttp's server internals the listener relies on, behind one door.

The listener (`connections`, `server`, `dispatch`) reaches below aiohttp's public API where
aiohttp offers no other way: to feed its parser one request part at a time and read what it
queued, to queue a refusal of its own in a parser refusal's place, to end aiohttp's request
loop without closing the connection, to hand its server a protocol of our own, and to give a
request its route without the router. Every private name of aiohttp's that the gateway uses is
here, under a public, typed name; nothing else in the gateway touches one.

tests/http/test_aiohttp_server.py holds each of them to what is relied on here (that it exists,
its type, what it does), so an aiohttp upgrade that changes one fails there first, by name,
rather than somewhere in the listener at run time.

What is relied on, by aiohttp's name:

- `RequestHandler._messages`: the deque of (parsed request or refusal, body reader) that
  `data_received` fills and aiohttp's request loop (`start`) takes from the left;
  `_request_count`, how many it has parsed on the connection; `_max_msg_queue_size`, the
  length past which its parser stops emitting requests.
- `web_protocol._ErrInfo(status, exc, message)`: a refusal in that queue, answered through
  `handle_error` in its turn.
- `_request_in_progress`: a handler is running; `_force_close` and `_close`: the loop takes
  no more requests; `_upgraded`: a request asked to upgrade, and what follows it waits in
  aiohttp's tail; `_waiter`: the future the idle loop awaits a request on; `_task_handler`:
  the loop's task; `_buffer_paused` and `_pause_reading_for_buffer()`: reading paused until
  the queue drains, when aiohttp calls `data_received(b"")`.
- `BaseProtocol._loop`: the connection's event loop.
- `web.Server._loop` and `_kwargs`: what `Server.__call__` makes each RequestHandler with.
- `web.AppRunner._make_server()`: where a runner builds its server.
- `web.Request._match_info`: what the router would have set.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections import deque
from logging import Logger
from typing import Required, TypedDict, cast

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

# What aiohttp's parser makes of one request's bytes: the request, or its refusal.
Parsed = RawRequestMessage | _ErrInfo
# One entry of a connection's queue: what was parsed, and the reader its body goes to.
Queued = tuple[Parsed, StreamReader]


def refusal(status: int, error: BaseException, message: str) -> Parsed:
    """A refusal to put in a connection's queue: aiohttp answers it with `handle_error(
    request, status, error, message)` when its turn comes, as it does its parser's own."""
    return _ErrInfo(status=status, exc=error, message=message)


def refusal_cause(parsed: Parsed) -> BaseException | None:
    """What a queued refusal was refused for (the parser's exception); None for a request."""
    return parsed.exc if isinstance(parsed, _ErrInfo) else None


class ProtocolOptions(TypedDict, total=False):
    """RequestHandler's keyword arguments: what aiohttp's server makes each connection's
    protocol with (its loop, and the runner's and the application's handler_args)."""

    loop: Required[asyncio.AbstractEventLoop]
    keepalive_timeout: float
    tcp_keepalive: bool
    logger: Logger
    access_log_class: type[AbstractAccessLogger]
    access_log: Logger
    access_log_format: str
    debug: bool
    max_line_size: int
    max_headers: int
    max_field_size: int
    lingering_time: float
    read_bufsize: int
    auto_decompress: bool
    timeout_ceil_threshold: float


def protocol_options(server: web.Server) -> ProtocolOptions:
    """The options `server` makes each connection's RequestHandler with."""
    # aiohttp keeps them untyped; test_aiohttp_server holds their names to ProtocolOptions.
    return cast(ProtocolOptions, {"loop": server._loop, **server._kwargs})


class RequestHandlerBase(RequestHandler):
    """aiohttp's protocol for one connection, its private state under public, typed names."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def queued(self) -> deque[Queued]:
        """What the parser made of the requests not yet taken by the request loop, in order;
        the listener's own refusals go here too, answered in their turn."""
        return self._messages

    @property
    def requests_parsed(self) -> int:
        """Requests (and refusals) the parser has queued on this connection so far."""
        return self._request_count

    @property
    def queue_full(self) -> bool:
        """Whether the parser would hold back a further request: the queue is at its bound."""
        bound = self._max_msg_queue_size
        return bool(bound) and len(self._messages) >= bound

    @property
    def handling_request(self) -> bool:
        """A request's handler is running (or its answer being written)."""
        return self._request_in_progress

    @property
    def force_closed(self) -> bool:
        """`force_close()` was called (or shutdown began): nothing more is answered."""
        return self._force_close

    @property
    def closing(self) -> bool:
        """No further request is taken: `force_close()`, or `close()` after the current one."""
        return self._force_close or self._close

    @property
    def upgraded(self) -> bool:
        """A request asked to upgrade: aiohttp keeps what follows it unparsed until answered."""
        return self._upgraded

    def pause_reading_until_drained(self) -> None:
        """Stops reading from the socket until the request loop drains the queue; aiohttp
        then resumes it and calls `data_received(b"")`."""
        if not self._buffer_paused:
            self._pause_reading_for_buffer()

    def wake_request_loop(self) -> None:
        """The request loop, idle, takes what was just queued."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def end_request_loop_after_answer(self) -> None:
        """The request loop ends after the answer being written, leaving the transport open
        (aiohttp's `force_close()` would close it at once, `close()` would read on)."""
        self._force_close = True

    def cancel_idle_request_loop(self) -> None:
        """Stops the request loop unless a handler is running: nothing is in flight, and
        the connection's bytes are the listener's to deal with."""
        if not self._request_in_progress and self._task_handler is not None:
            self._task_handler.cancel()


class RunnerBase(web.AppRunner):
    """aiohttp's AppRunner, serving through the server `wrap_server` makes of its own."""

    async def _make_server(self) -> web.Server:
        return self.wrap_server(await super()._make_server())

    @abstractmethod
    def wrap_server(self, server: web.Server) -> web.Server:
        """The server to run in place of `server`, the application's own."""


def set_match_info(request: web.Request, match_info: UrlMappingMatchInfo) -> None:
    """Gives the request the route the router would have resolved for it."""
    request._match_info = match_info
