"""What gateway/upstream/aiohttp_client.py relies on in aiohttp's client still exists and
behaves so: an aiohttp release that changes one of them fails here, not in production."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from gateway.upstream.aiohttp_client import WaryConnector, heard, without_resends

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
Script = Callable[["Served", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Served:
    def __init__(self) -> None:
        self.url = ""
        self.requests = 0
        self.connections = 0


@contextlib.asynccontextmanager
async def serving(script: Script) -> AsyncIterator[Served]:
    served = Served()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.connections += 1
        try:
            await script(served, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    served.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    async with server:
        yield served


async def read_request(served: Served, reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")
    served.requests += 1


async def drops_the_second_request(
    served: Served, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The first connection answers once, then closes on the next request unanswered (a
    server timing out an idle connection just as it arrives); later ones answer."""
    first = served.connections == 1
    while True:
        await read_request(served, reader)
        if first and served.requests > 1:
            return
        writer.write(OK)
        await writer.drain()


async def test_a_session_still_has_the_private_switch_for_its_resend() -> None:
    async with aiohttp.ClientSession() as session:
        assert session._retry_connection is True
        without_resends(session)
        assert session._retry_connection is False
    # aiohttp's debug mode warns on a ClientSession attribute outside ATTRS.
    assert "_retry_connection" in aiohttp.ClientSession.ATTRS


async def test_without_resends_a_get_on_a_broken_kept_alive_connection_is_sent_once() -> None:
    async with serving(drops_the_second_request) as served:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.get(served.url) as response:
                    assert await response.read() == b"ok"
        # aiohttp sent the dropped GET again on a new connection.
        assert served.requests == 3
    async with serving(drops_the_second_request) as served:
        async with aiohttp.ClientSession() as session:
            without_resends(session)
            async with session.get(served.url) as response:
                assert await response.read() == b"ok"
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await session.get(served.url)
        assert served.requests == 2


async def test_the_wary_connectors_own_names_are_not_aiohttps() -> None:
    """WaryConnector keeps its state on aiohttp's connector object: names aiohttp does not
    use there, or one would overwrite the other."""
    plain, wary = aiohttp.TCPConnector(), WaryConnector()
    try:
        aiohttps = set(vars(plain)) | set(dir(aiohttp.TCPConnector))
        assert set(vars(wary)) - aiohttps == {"_rested", "_wary_until"}
    finally:
        await plain.close()
        await wary.close()


async def test_a_released_connection_runs_its_callback_and_shows_what_it_heard() -> None:
    """`Connection.add_callback` runs as the answer is read (the connection goes back to the
    pool); a protocol at rest is connected, has no answer parsed (`len()` 0) and no reason
    to close (`should_close`); once its server closes it, it is no longer connected."""
    closed = asyncio.Event()

    async def answers_then_closes(
        served: Served, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(served, reader)
        writer.write(OK)
        await writer.drain()
        await closed.wait()

    async with serving(answers_then_closes) as served:
        connector = WaryConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(served.url) as response:
                await response.read()
            [protocol] = list(connector._rested)
            assert protocol.is_connected()
            assert len(protocol) == 0
            assert not protocol.should_close
            assert not heard(protocol)
            closed.set()
            async with asyncio.timeout(5):
                while protocol.is_connected():  # noqa: ASYNC110
                    await asyncio.sleep(0)  # wait-ok: the loop reads the FIN in a later turn
            assert heard(protocol)


async def test_a_stray_answer_at_rest_is_parsed_and_kept_for_the_next_call() -> None:
    """What WaryConnector guards against, as aiohttp does it: an answer that comes while the
    connection rests is parsed into the protocol (`len()` 1) and marks it `should_close`."""
    stray = asyncio.Event()

    async def answers_twice(
        served: Served, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(served, reader)
        writer.write(OK)
        await writer.drain()
        await stray.wait()
        writer.write(OK)
        await writer.drain()
        await reader.read()

    async with serving(answers_twice) as served:
        connector = WaryConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.get(served.url) as response:
                await response.read()
            [protocol] = list(connector._rested)
            stray.set()
            async with asyncio.timeout(5):
                while len(protocol) == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0)  # wait-ok: the loop reads the stray in a later turn
            assert protocol.should_close
            assert heard(protocol)
