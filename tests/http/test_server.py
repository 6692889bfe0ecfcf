"""The listener's server and runner: the connection cap (the connection waiting longest on its
client gives way; when all are busy, the new one is refused), the summary of what the cap did,
and the listener's own refusals counted and logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from gateway.http import server
from gateway.http.client_waits import IDLE, REFUSED
from gateway.http.connections import ConnectionLimits
from gateway.http.server import GuardedRunner, Summary
from tests.support.rawhttp import statuses
from tests.support.waiting import until

MAX_CONNECTIONS = 2
LIMITS = ConnectionLimits(
    max_header_bytes=4096,
    header_timeout_s=10,
    keepalive_timeout_s=30,
    max_connections=MAX_CONNECTIONS,
)
GET_OK = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
GET_HELD = b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n"


class Lines(logging.Handler):
    """The messages a logger writes, and an event for each."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self.written = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.written.set()

    async def until(self, count: int) -> list[str]:
        async with asyncio.timeout(10):
            while len(self.messages) < count:
                self.written.clear()
                await self.written.wait()
        return self.messages


def capture(name: str) -> Iterator[Lines]:
    logger = logging.getLogger(name)
    lines, level = Lines(), logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


@pytest.fixture
def listener_log() -> Iterator[Lines]:
    yield from capture("neu_gateway.listener")


@pytest.fixture
def access_log() -> Iterator[Lines]:
    yield from capture("neu_gateway.access")


# -- the summary -----------------------------------------------------------------------------


async def test_the_first_eviction_is_logged_at_once_the_rest_summed_up_later(
    listener_log: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "SUMMARY_EVERY_S", 0.01)
    counted: list[str] = []
    summary = Summary(4, counted.append)
    summary.add(IDLE)
    assert listener_log.messages == [
        "limits.max_connections (4) reached: closed 1 connection(s) waiting longest on their "
        "client (idle) (more are counted in neu_gateway_connections_evicted_total and summed up "
        "here every 0s)"
    ]
    for state in (IDLE, IDLE, REFUSED):
        summary.add(state)
    messages = await listener_log.until(2)
    summary.close()
    assert counted == ["idle", "idle", "idle", "refused"]
    assert messages[1] == (
        "limits.max_connections (4) reached, in the last 0s: closed 2 connection(s) waiting "
        "longest on their client (idle); refused 1 new connection(s) with 503, every open one "
        "busy with a request"
    )


async def test_a_quiet_period_logs_nothing_and_a_closed_summary_nothing_more(
    listener_log: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "SUMMARY_EVERY_S", 0.01)
    summary = Summary(4, lambda state: None)
    summary.add(IDLE)
    later = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, later.set)
    async with asyncio.timeout(10):
        await later.wait()  # a few summary periods without an eviction
    summary.close()
    summary.close()
    assert len(listener_log.messages) == 1


# -- the cap, on a real listener -------------------------------------------------------------


@dataclass
class Listener:
    port: int = 0
    evicted: list[str] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    # What the listener told the connections' gauge: +1 opened, -1 closed.
    connection_changes: list[int] = field(default_factory=list)
    started: asyncio.Queue[None] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    runner: GuardedRunner | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def stop(self) -> None:
        self.release.set()
        for writer in self.writers:
            writer.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def held(self, request: web.Request) -> web.Response:
        await self.started.put(None)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return web.Response(text="held")

    async def handlers_started(self, count: int) -> None:
        async with asyncio.timeout(10):
            for _ in range(count):
                await self.started.get()


async def listening(log_refusals: bool = True) -> Listener:
    listener = Listener()
    app = web.Application()
    app.router.add_get("/ok", listener.ok)
    app.router.add_get("/held", listener.held)
    runner = GuardedRunner(
        app,
        LIMITS,
        on_refused=listener.refused.append,
        on_evicted=listener.evicted.append,
        log_refusals=log_refusals,
        on_connections=listener.connection_changes.append,
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    listener.port = runner.addresses[0][1]
    listener.runner = runner
    return listener


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    made = await listening()
    try:
        yield made
    finally:
        await made.stop()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(listener: Listener) -> Connection:
    """A connection to the listener, closed when the listener stops."""
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    listener.writers.append(writer)
    return reader, writer


async def ask(connection: Connection, request: bytes = GET_OK) -> int:
    """Sends a request and reads its whole answer; its status."""
    reader, writer = connection
    writer.write(request)
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    (status,) = statuses(head)
    return status


async def answered(connection: Connection) -> int:
    """The status of the answer already asked for."""
    reader = connection[0]
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
    (status,) = statuses(head)
    return status


async def closed(connection: Connection) -> bytes:
    """What the connection still receives up to the server's close."""
    async with asyncio.timeout(10):
        return await connection[0].read(-1)


async def test_at_the_cap_the_connection_idle_longest_gives_way(
    listener: Listener, listener_log: Lines
) -> None:
    first, second = await connect(listener), await connect(listener)
    assert await ask(first) == 200
    assert await ask(second) == 200
    third = await connect(listener)
    assert await ask(third) == 200
    assert await closed(first) == b""
    assert await ask(second) == 200  # one of the two left at the cap
    assert listener.evicted[0] == "idle"
    assert listener_log.messages[0].startswith("limits.max_connections (2) reached: closed 1")


async def test_at_the_cap_with_every_connection_busy_a_new_one_is_refused(
    listener: Listener,
) -> None:
    first, second = await connect(listener), await connect(listener)
    first[1].write(GET_HELD)
    second[1].write(GET_HELD)
    await listener.handlers_started(2)
    third = await connect(listener)
    answer = await closed(third)
    assert statuses(answer) == [503]
    assert b'"error": "too_many_connections"' in answer
    assert listener.evicted == ["refused"]
    assert listener.refused == [503]
    listener.release.set()
    assert await answered(first) == 200


async def test_a_refused_connection_does_not_count_against_the_cap(listener: Listener) -> None:
    first, second = await connect(listener), await connect(listener)
    first[1].write(GET_HELD)
    second[1].write(GET_HELD)
    await listener.handlers_started(2)
    await closed(await connect(listener))
    assert listener.runner is not None
    guarded = listener.runner.server
    assert isinstance(guarded, server.GuardedServer)
    assert guarded.open_connections == MAX_CONNECTIONS
    listener.release.set()
    for connection in (first, second):
        assert await answered(connection) == 200


async def test_the_connections_gauge_follows_the_open_connections(listener: Listener) -> None:
    assert listener.runner is not None
    guarded = listener.runner.server
    assert isinstance(guarded, server.GuardedServer)

    def gauge() -> int:
        return sum(listener.connection_changes)

    first, second = await connect(listener), await connect(listener)
    first[1].write(GET_HELD)
    second[1].write(GET_HELD)
    await listener.handlers_started(2)
    assert gauge() == 2
    await closed(await connect(listener))  # refused at the cap: counted in and out
    await until(lambda: gauge() == guarded.open_connections == MAX_CONNECTIONS)
    listener.release.set()
    assert await answered(first) == 200
    first[1].close()
    await until(lambda: gauge() == guarded.open_connections == 1)
    assert all(change in (1, -1) for change in listener.connection_changes)


# -- refusals before any handler -------------------------------------------------------------


async def test_a_request_refused_before_any_handler_is_counted_and_logged(
    listener: Listener, access_log: Lines
) -> None:
    connection = await connect(listener)
    connection[1].write(b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(await closed(connection)) == [400]
    assert listener.refused == [400]
    (line,) = await access_log.until(1)
    assert "status=400" in line


async def test_a_listener_may_leave_its_refusals_out_of_the_access_log(access_log: Lines) -> None:
    listener = await listening(log_refusals=False)
    try:
        connection = await connect(listener)
        connection[1].write(b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses(await closed(connection)) == [400]
        assert listener.refused == [400]
        assert access_log.messages == []
    finally:
        await listener.stop()


async def test_a_handler_whose_client_left_is_cancelled(listener: Listener) -> None:
    connection = await connect(listener)
    connection[1].write(GET_HELD)
    await listener.handlers_started(1)
    connection[1].close()
    async with asyncio.timeout(10):
        await listener.cancelled.wait()
