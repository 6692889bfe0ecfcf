"""One lean connection, over a real socket pair: the test writes the platform's side."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from gateway.core.errors import UpstreamBadResponse
from gateway.upstream.lean.connection import NEVER, Connection, ConnectionLost, Strays

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok"
REQUEST = b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n"


@dataclass
class Pair:
    connection: Connection
    strays: Strays
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def deadline(self, seconds: float = 5) -> float:
        return asyncio.get_running_loop().time() + seconds

    async def request_read(self) -> bytes:
        return await self.reader.readuntil(b"\r\n\r\n")

    async def answer(self, data: bytes) -> None:
        await self.request_read()
        self.writer.write(data)
        await self.writer.drain()


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    strays = Strays()
    _, connection = await loop.create_connection(lambda: Connection(loop, False, strays), sock=ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    yield Pair(connection, strays, reader, writer)
    connection.close()
    writer.close()


async def test_an_answer_is_read_whole_and_the_connection_kept(pair: Pair) -> None:
    exchange = asyncio.ensure_future(pair.connection.exchange(REQUEST, 100, pair.deadline()))
    await pair.answer(OK)
    answer = await exchange
    assert (answer.status, answer.body, answer.headers["X-A"]) == (200, b"ok", "1")
    assert pair.connection.reusable
    assert not pair.connection.lost


async def test_an_answer_that_says_close_is_not_reused(pair: Pair) -> None:
    exchange = asyncio.ensure_future(pair.connection.exchange(REQUEST, 100, pair.deadline()))
    await pair.answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    await exchange
    assert not pair.connection.reusable


async def test_trailers_are_not_merged_into_the_head(pair: Pair) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\nX-Trailer: sneaked\r\n\r\n"
    )
    exchange = asyncio.ensure_future(pair.connection.exchange(REQUEST, 100, pair.deadline()))
    await pair.answer(chunked)
    answer = await exchange
    assert answer.body == b"ok"
    assert "X-Trailer" not in answer.headers


async def test_a_chunked_body_past_the_cap_is_refused(pair: Pair) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * 20
    exchange = asyncio.ensure_future(pair.connection.exchange(REQUEST, 10, pair.deadline()))
    await pair.answer(chunked)
    with pytest.raises(UpstreamBadResponse, match="max_response_bytes"):
        await exchange
    assert pair.connection.lost


async def test_bytes_with_no_call_waiting_close_the_connection_as_strays(pair: Pair) -> None:
    assert pair.strays.last_s == NEVER
    pair.writer.write(OK)
    await pair.writer.drain()
    async with asyncio.timeout(5):
        while not pair.connection.lost:  # noqa: ASYNC110
            await asyncio.sleep(0)  # wait-ok: the loop reads the bytes in a later turn
    assert pair.connection.stray
    assert pair.strays.last_s != NEVER


async def test_a_second_answer_behind_one_on_a_reused_connection_is_refused(pair: Pair) -> None:
    first = asyncio.ensure_future(pair.connection.exchange(REQUEST, 100, pair.deadline()))
    await pair.answer(OK)
    await first
    second = asyncio.ensure_future(pair.connection.exchange(REQUEST, 100, pair.deadline()))
    await pair.answer(OK + OK)
    with pytest.raises(UpstreamBadResponse, match="cannot be told"):
        await second


async def test_no_answer_by_the_deadline_is_a_timeout_and_the_connection_closes(
    pair: Pair,
) -> None:
    with pytest.raises(TimeoutError):
        await pair.connection.exchange(REQUEST, 100, pair.deadline(0.01))
    assert pair.connection.lost


async def test_a_connection_closed_before_any_answer_is_lost_not_refused(pair: Pair) -> None:
    exchange = asyncio.ensure_future(pair.connection.exchange(REQUEST, 100, pair.deadline()))
    await pair.request_read()
    pair.writer.close()
    with pytest.raises(ConnectionLost) as lost:
        await exchange
    assert not lost.value.reused


async def test_a_connection_already_gone_is_lost_before_anything_is_sent() -> None:
    loop = asyncio.get_running_loop()
    connection = Connection(loop, False, Strays())
    connection.connection_lost(None)
    with pytest.raises(ConnectionLost, match="before the request was sent"):
        await connection.exchange(REQUEST, 100, loop.time() + 5)


async def test_the_parser_is_let_go_with_the_connection() -> None:
    """The parser and the connection point at each other: the link goes at the loss, and a
    late callback is a clear error rather than a read of a parser that is gone."""
    connection = Connection(asyncio.get_running_loop(), False, Strays())
    connection.connection_lost(None)
    with pytest.raises(RuntimeError, match="after the connection was lost"):
        connection.on_headers_complete()
