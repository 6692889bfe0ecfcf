"""Each aiohttp internal the listener relies on (gateway/http/aiohttp_server.py) still exists on
the installed aiohttp and behaves as relied on; and nothing else in gateway/http touches one.

An aiohttp upgrade that renames, retypes or changes one of them fails here, by name, first.
The protocol under test is aiohttp's own RequestHandler (through the adapter's base class) on
a real loopback connection, its handler held until the test releases it.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_type_hints

import pytest
from aiohttp import web, web_protocol
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

import gateway.http
from gateway.http import aiohttp_server
from gateway.http.aiohttp_server import (
    ProtocolOptions,
    RequestHandlerBase,
    RunnerBase,
    protocol_options,
    refusal,
    refusal_cause,
)
from gateway.http.connections import GuardedRequestHandler
from gateway.http.feeding import FramedRequestHandler
from gateway.http.server import GuardedRunner, GuardedServer
from tests.support.rawhttp import statuses

GET = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n"
HTTP_DIR = Path(gateway.http.__file__).parent


class RecordingHandler(RequestHandlerBase):
    """The adapter's base class as it is, but for noting each data_received call's bytes."""

    def __init__(self, manager: web.Server, **options: object) -> None:
        super().__init__(manager, **protocol_options(manager))
        self.received: list[bytes] = []
        self.fed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        super().data_received(data)
        self.fed.set()


@dataclass
class Held:
    """A server whose handler answers each request once the test releases it."""

    protocols: list[RecordingHandler] = field(default_factory=list)
    started: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        await self.started.put(request.path)
        await self.release.wait()
        return web.Response(text=request.path)

    async def next_started(self) -> str:
        """The path of the next request whose handler began."""
        async with asyncio.timeout(10):
            return await self.started.get()

    @property
    def protocol(self) -> RecordingHandler:
        (protocol,) = self.protocols
        return protocol


@pytest.fixture
async def held() -> AsyncIterator[Held]:
    state = Held()
    aiohttp_server_ = web.Server(state.handle)

    def make() -> RecordingHandler:
        protocol = RecordingHandler(aiohttp_server_)
        state.protocols.append(protocol)
        return protocol

    listener = await asyncio.get_running_loop().create_server(make, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        state.release.set()
        listener.close()
        await aiohttp_server_.shutdown(1)
        await listener.wait_closed()


@pytest.fixture
async def client(held: Held) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", held.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def answers(reader: asyncio.StreamReader, count: int) -> list[int]:
    """The statuses of the next `count` answers on the connection, each read whole."""
    found = []
    async with asyncio.timeout(10):
        for _ in range(count):
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            assert length is not None, head
            await reader.readexactly(int(length[1]))
            found += statuses(head)
    return found


async def until(protocol: RecordingHandler, condition: Callable[[], bool]) -> None:
    """Until the condition holds, checked after each read the protocol is given."""
    async with asyncio.timeout(10):
        while not condition():
            protocol.fed.clear()
            await protocol.fed.wait()


# -- the names, as they are declared ---------------------------------------------------------

REQUEST_HANDLER_SLOTS = [
    "_messages",
    "_request_count",
    "_max_msg_queue_size",
    "_request_in_progress",
    "_force_close",
    "_close",
    "_waiter",
    "_task_handler",
]
BASE_PROTOCOL_SLOTS = ["_loop", "_upgraded", "_buffer_paused"]


@pytest.mark.parametrize("name", REQUEST_HANDLER_SLOTS)
def test_request_handler_keeps_its_state_under_the_names_relied_on(name: str) -> None:
    assert name in RequestHandler.__slots__


@pytest.mark.parametrize("name", BASE_PROTOCOL_SLOTS)
def test_base_protocol_keeps_its_state_under_the_names_relied_on(name: str) -> None:
    assert name in BaseProtocol.__slots__


def test_reading_is_paused_for_a_full_queue_by_a_method_of_that_name() -> None:
    assert callable(BaseProtocol._pause_reading_for_buffer)


def test_a_queued_refusal_is_an_err_info_of_status_exc_and_message() -> None:
    error = ValueError("x")
    made = refusal(431, error, "too large")
    assert isinstance(made, web_protocol._ErrInfo)
    assert (made.status, made.exc, made.message) == (431, error, "too large")
    assert refusal_cause(made) is error


def test_a_parsed_request_has_no_refusal_cause() -> None:
    message = web_protocol.ERROR
    assert isinstance(message, RawRequestMessage)
    assert refusal_cause(message) is None


def test_the_protocol_options_are_request_handlers_keyword_arguments() -> None:
    parameters = inspect.signature(RequestHandler.__init__).parameters
    keywords = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert set(get_type_hints(ProtocolOptions)) == keywords


async def test_a_servers_options_are_its_loop_and_handler_arguments() -> None:
    app = web.Application(handler_args={"max_line_size": 1234, "lingering_time": 2.0})
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        server = runner.server
        assert server is not None
        options = protocol_options(server)
        assert options["loop"] is asyncio.get_running_loop()
        assert options["max_line_size"] == 1234
        assert options["access_log"] is None
        assert set(options) <= set(get_type_hints(ProtocolOptions))
    finally:
        await runner.cleanup()


def test_a_runner_makes_its_server_in_make_server() -> None:
    assert inspect.iscoroutinefunction(web.AppRunner._make_server)


async def test_the_server_wrap_server_returns_is_the_one_that_serves() -> None:
    made: list[web.Server] = []

    class Runner(RunnerBase):
        def wrap_server(self, server: web.Server) -> web.Server:
            wrapped = web.Server(lambda request: self.answer(), **protocol_options(server))
            made.extend([server, wrapped])
            return wrapped

        async def answer(self) -> web.Response:
            return web.Response(status=299)

    runner = Runner(web.Application())
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET % 1)
        assert await answers(reader, 1) == [299]
        writer.close()
        assert runner.server is made[1]
    finally:
        await runner.cleanup()


async def test_a_requests_match_info_is_the_one_set() -> None:
    app = web.Application()

    async def other(request: web.Request) -> web.Response:
        return web.Response()

    route = app.router.add_get("/other", other, name="other")

    async def handler(request: web.Request) -> web.Response:
        aiohttp_server.set_match_info(request, UrlMappingMatchInfo({}, route))
        return web.Response(text=str(request.match_info.route.name))

    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(10):
            answer = await reader.read(-1)
        writer.close()
        assert answer.endswith(b"\r\n\r\nother")
    finally:
        await runner.cleanup()


# -- the state, as it behaves on a connection ------------------------------------------------


async def test_the_parser_queues_what_it_parses_behind_the_request_being_handled(
    held: Held, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    reader, writer = client
    body = b"a=1"
    post = b"POST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n" + body
    writer.write(GET % 1 + GET % 2 + post)
    assert await held.next_started() == "/1"
    protocol = held.protocol
    assert protocol.loop is asyncio.get_running_loop()
    assert protocol.handling_request
    assert protocol.requests_parsed == 3
    queued = protocol.queued
    assert isinstance(queued, deque)
    assert [type(parsed) for parsed, _ in queued] == [RawRequestMessage, RawRequestMessage]
    assert all(isinstance(payload, StreamReader) for _, payload in queued)
    (_, get_body), (post_head, post_body) = queued[0], queued[1]
    assert get_body is EMPTY_PAYLOAD
    assert isinstance(post_head, RawRequestMessage)
    assert post_head.path == "/3"
    assert post_body.is_eof()
    assert post_body.read_nowait(-1) == body
    held.release.set()
    assert await answers(reader, 3) == [200, 200, 200]
    assert not protocol.handling_request
    assert not protocol.queued


async def test_a_malformed_request_is_queued_as_a_refusal_with_its_cause(
    held: Held, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    reader, writer = client
    writer.write(GET % 1)
    await held.next_started()
    # (In a read of its own: the parser drops what it parsed in the same read as a refusal.)
    writer.write(b"G\x01T / HTTP/1.1\r\n\r\n")
    protocol = held.protocol
    await until(protocol, lambda: bool(protocol.queued))
    ((parsed, payload),) = protocol.queued
    assert not isinstance(parsed, RawRequestMessage)
    assert isinstance(refusal_cause(parsed), HttpProcessingError)
    assert payload is EMPTY_PAYLOAD
    held.release.set()
    assert await answers(reader, 2) == [200, 400]


async def test_a_refusal_queued_by_hand_is_answered_in_its_turn(
    held: Held, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    reader, writer = client
    writer.write(GET % 1)
    await held.next_started()
    protocol = held.protocol
    protocol.queued.append((refusal(503, RuntimeError("full"), "full"), EMPTY_PAYLOAD))
    held.release.set()
    assert await answers(reader, 2) == [200, 503]


async def test_an_idle_request_loop_is_woken_for_a_refusal_queued_by_hand(
    held: Held, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    reader, writer = client
    held.release.set()
    writer.write(GET % 1)
    assert await answers(reader, 1) == [200]
    protocol = held.protocol
    protocol.queued.append((refusal(503, RuntimeError("full"), "full"), EMPTY_PAYLOAD))
    protocol.wake_request_loop()
    assert await answers(reader, 1) == [503]


async def test_the_queue_is_full_at_aiohttps_bound(
    held: Held, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    """aiohttp's parser stops making requests past its bound of queued ones, which is what
    queue_full reads; what is held back is parsed as the queue drains."""
    reader, writer = client
    bound = web_protocol.MAX_MSG_QUEUE_SIZE
    writer.write(b"".join(GET % n for n in range(2 * bound)))
    await held.next_started()
    protocol = held.protocol
    await until(protocol, lambda: len(protocol.queued) >= bound - 1)
    assert protocol.requests_parsed <= bound + 1
    # (Whether the reads filled it up to the bound depends on how the bytes came.)
    copies = 0
    while len(protocol.queued) < bound:
        assert not protocol.queue_full
        protocol.queued.appendleft(protocol.queued[0])
        copies += 1
    assert protocol.queue_full
    for _ in range(copies):
        protocol.queued.popleft()
    held.release.set()
    assert await answers(reader, 2 * bound) == [200] * (2 * bound)


async def test_reading_paused_until_drained_resumes_with_an_empty_data_received(
    held: Held, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    reader, writer = client
    writer.write(GET % 1 + GET % 2)
    await held.next_started()
    protocol = held.protocol
    protocol.pause_reading_until_drained()
    protocol.pause_reading_until_drained()  # once paused, a second call does nothing
    assert b"" not in protocol.received
    held.release.set()
    assert await answers(reader, 2) == [200, 200]
    assert b"" in protocol.received


async def test_a_request_asking_to_upgrade_keeps_what_follows_it_unparsed(
    held: Held, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    reader, writer = client
    upgrade = b"GET /1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    writer.write(upgrade + GET % 2)
    await held.next_started()
    protocol = held.protocol
    assert protocol.upgraded
    assert protocol.requests_parsed == 1
    held.release.set()
    assert await answers(reader, 2) == [200, 200]
    assert not protocol.upgraded


async def test_closing_and_force_closed_follow_close_and_force_close(
    held: Held, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    _, writer = client
    writer.write(GET % 1)
    await held.next_started()
    protocol = held.protocol
    assert (protocol.closing, protocol.force_closed) == (False, False)
    protocol.close()
    assert (protocol.closing, protocol.force_closed) == (True, False)
    protocol.force_close()
    assert (protocol.closing, protocol.force_closed) == (True, True)


async def test_the_request_loop_ended_after_an_answer_leaves_the_connection_open(
    held: Held, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    reader, writer = client
    writer.write(GET % 1 + GET % 2)
    await held.next_started()
    protocol = held.protocol
    protocol.end_request_loop_after_answer()
    task = protocol._task_handler
    assert isinstance(task, asyncio.Task)
    held.release.set()
    async with asyncio.timeout(10):
        await task
    assert await answers(reader, 1) == [200]
    # The second request is never answered, and the transport is still the listener's.
    transport = protocol.transport
    assert transport is not None
    assert not transport.is_closing()
    transport.write(b"still open")
    async with asyncio.timeout(10):
        assert await reader.readexactly(10) == b"still open"


async def test_an_idle_request_loop_is_cancelled_and_a_busy_one_is_not(
    held: Held, client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    reader, writer = client
    writer.write(GET % 1)
    await held.next_started()
    protocol = held.protocol
    task = protocol._task_handler
    assert isinstance(task, asyncio.Task)
    protocol.cancel_idle_request_loop()
    held.release.set()
    assert await answers(reader, 1) == [200]
    assert not task.cancelled()
    protocol.cancel_idle_request_loop()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(10):
            await task
    assert protocol.transport is not None


# -- nothing else touches them ---------------------------------------------------------------


def _own_private_names(cls: type) -> set[str]:
    tree = ast.parse(inspect.getsource(cls))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    }


async def _aiohttps_names(cls: type) -> set[str]:
    names: set[str] = set()
    for base in cls.__mro__:
        if base.__module__.startswith("aiohttp."):
            names |= set(vars(base)) | set(getattr(base, "__slots__", ()))
    if issubclass(cls, web.Server):
        names |= set(vars(web.Server(lambda request: web.Response())))  # no __slots__
    return names


@pytest.mark.parametrize(
    "cls", [FramedRequestHandler, GuardedRequestHandler, GuardedServer, GuardedRunner]
)
async def test_the_listeners_own_state_uses_no_name_of_aiohttps(cls: type) -> None:
    """Our subclasses of aiohttp's classes keep state under `self._name`s of their own: one
    aiohttp also used would silently share (or, in a __slots__ class, take over) its state."""
    assert _own_private_names(cls) & await _aiohttps_names(cls) == set()


OVERRIDDEN = {
    RequestHandlerBase: set(),
    FramedRequestHandler: {"connection_lost", "data_received"},
    GuardedRequestHandler: {
        "connection_made",
        "connection_lost",
        "data_received",
        "finish_response",
        "pause_writing",
        "resume_writing",
        "shutdown",
        "handle_error",
    },
    RunnerBase: {"_make_server"},
    GuardedRunner: set(),
    GuardedServer: {"shutdown"},
}


@pytest.mark.parametrize("cls", list(OVERRIDDEN), ids=lambda cls: cls.__name__)
async def test_our_subclasses_override_only_the_methods_they_mean_to(cls: type) -> None:
    """A name of ours that aiohttp's class has too would replace aiohttp's own (say a `loop`
    property, were aiohttp to add one)."""
    # (_abc_impl is ABCMeta's, in every abstract class.)
    ours = {name for name in vars(cls) if not name.startswith("__") and name != "_abc_impl"}
    assert ours & await _aiohttps_names(cls) == OVERRIDDEN[cls]
