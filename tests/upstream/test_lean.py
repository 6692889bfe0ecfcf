"""The lean client against scripted upstreams: real sockets on loopback, each answering with
exactly the bytes a test gives it."""

from __future__ import annotations

import asyncio
import gzip
import socket
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.core.errors import UpstreamBadResponse, UpstreamUnreachable
from gateway.egress.keys import UPSTREAM
from gateway.upstream.lean.connection import ConnectionLost
from tests.conftest import GatewayFactory
from tests.support.answers import envelope_of
from tests.support.lean_calls import call, pool_for
from tests.support.paths import ECHO as ECHO_PATH
from tests.support.paths import UPLOAD as UPLOAD_PATH
from tests.support.scripted_server import OK, answering, ok, read_request, upstream


async def test_a_kept_alive_connection_carries_the_next_call() -> None:
    async with upstream(answering(ok(), ok(b"second"))) as served:
        pool = pool_for(served.url)
        assert (await call(pool)).body == OK
        assert (await call(pool, body=b"x=1")).body == b"second"
        assert served.connections == 1
        pool.close()


async def test_connection_close_is_honoured_and_the_next_call_reconnects() -> None:
    closing = ok(extra=b"Connection: close\r\n")
    async with upstream(answering(closing, keep=False)) as served:
        pool = pool_for(served.url)
        assert (await call(pool)).body == OK
        assert (await call(pool)).body == OK
        assert served.connections == 2


async def test_an_answer_without_a_length_ends_with_the_connection() -> None:
    async with upstream(answering(b"HTTP/1.1 200 OK\r\n\r\n" + OK, keep=False)) as served:
        answer = await call(pool_for(served.url))
        assert (answer.status, answer.body) == (200, OK)


async def test_a_transfer_coding_other_than_chunked_ends_with_the_connection() -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n" + OK
    async with upstream(answering(answer, keep=False)) as served:
        assert (await call(pool_for(served.url))).body == OK


async def test_a_chunked_answer_is_put_together() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    async with upstream(answering(chunked)) as served:
        assert (await call(pool_for(served.url))).body == b"hello world"


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        pytest.param(b"SSH-2.0-OpenSSH\r\n\r\n", "not valid HTTP", id="not HTTP"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "not valid HTTP",
            id="two lengths",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", "bytes of headers", id="huge"
        ),
        pytest.param(ok(b"x" * 2000), "max_response_bytes", id="over the cap"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "ended", id="cut short"
        ),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "101", id="101"),
    ],
)
async def test_an_unusable_answer_is_a_bad_response_and_the_connection_is_dropped(
    answer: bytes, says: str
) -> None:
    async with upstream(answering(answer, keep=False)) as served:
        pool = pool_for(served.url)
        with pytest.raises(UpstreamBadResponse, match=says):
            await call(pool, max_body_bytes=1000)
        assert pool._idle == []


async def test_a_connection_closed_before_any_answer_is_lost_and_frees_its_slot() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with upstream(hang_up) as served:
        pool = pool_for(served.url, limit=1)
        with pytest.raises(ConnectionLost):
            await call(pool)
        served.script = answering(ok())
        assert (await call(pool)).body == OK


async def test_a_refused_connection_is_unreachable_and_unsent() -> None:
    async with upstream(answering()) as served:
        url = served.url
    with pytest.raises(UpstreamUnreachable) as raised:
        await call(pool_for(url))
    assert raised.value.unsent


async def test_bytes_sent_while_idle_retire_the_connection() -> None:
    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok() + b"HTTP/1.1 200 OK\r\n")
        await writer.drain()
        await reader.read()

    async with upstream(chatty) as served:
        pool = pool_for(served.url)
        assert (await call(pool)).body == OK
        # The stray bytes arrive with the answer or after: either way no call reads them.
        assert (await call(pool)).body == OK
        assert served.connections == 2


async def test_the_cap_makes_calls_wait_for_a_connection_not_fail() -> None:
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(ok())
            await writer.drain()

    async with upstream(slow) as served:
        pool = pool_for(served.url, limit=2)
        calls = [asyncio.create_task(call(pool)) for _ in range(5)]
        await served.until(lambda: served.connections == 2)
        release.set()
        answers = await asyncio.gather(*calls)
        assert [answer.body for answer in answers] == [OK] * 5
        assert served.most_open == 2
        pool.close()


async def test_a_cancelled_call_closes_its_connection_and_frees_its_slot() -> None:
    arrived = asyncio.Event()

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        arrived.set()
        await reader.read()

    async with upstream(never) as served:
        pool = pool_for(served.url, limit=1)
        waiting = asyncio.create_task(call(pool))
        await arrived.wait()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert pool._idle == []
        served.script = answering(ok())
        assert (await call(pool)).body == OK


async def test_an_idle_connection_is_closed_after_keepalive_s() -> None:
    async with upstream(answering(ok())) as served:
        pool = pool_for(served.url, keepalive_s=0.01)
        await call(pool)
        await served.until(lambda: served.open == 0)
        assert pool._idle == [] or pool._idle[0].lost


async def test_through_the_gateway_a_compression_bomb_is_a_502(
    make_gateway: GatewayFactory,
) -> None:
    bomb = gzip.compress(b"{" * 20_000_000)
    answer = ok(bomb, b"Content-Encoding: gzip\r\n")
    async with upstream(answering(answer)) as served:
        gateway = await make_gateway(upstream=served.url)
        response = await gateway.get(ECHO_PATH)
        message = await envelope_of(response, 502, "upstream_bad_response")
        assert "max_response_bytes" in message


async def test_through_the_gateway_unread_bytes_never_reach_the_next_caller(
    make_gateway: GatewayFactory,
) -> None:
    """A platform that answers twice to one request: the second answer must not become the
    next caller's."""
    smuggled = ok() + ok(b'{"smuggled":true}')
    async with upstream(answering(smuggled, ok(b'{"second":true}'))) as served:
        gateway = await make_gateway(upstream=served.url)
        first: Any = await (await gateway.get(ECHO_PATH)).read()
        second: Any = await (await gateway.get(ECHO_PATH)).read()
        assert first == OK
        assert b"smuggled" not in second


async def test_a_silent_upstream_times_out_and_its_connection_and_slot_are_let_go() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()

    async with upstream(silent) as served:
        pool = pool_for(served.url, limit=1)
        with pytest.raises(TimeoutError):
            await call(pool, timeout_s=0.05)
        await served.until(lambda: served.open == 0)
        # The slot is back: a second call waits for it no longer than its own time.
        with pytest.raises(TimeoutError):
            await call(pool, timeout_s=0.05)


async def test_a_call_waiting_for_a_slot_gives_up_at_its_deadline() -> None:
    release = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await release.wait()
        writer.write(ok())
        await writer.drain()
        await reader.read()

    async with upstream(held) as served:
        pool = pool_for(served.url, limit=1)
        holder = asyncio.create_task(call(pool))
        await served.until(lambda: served.connections == 1)
        with pytest.raises(TimeoutError):
            await call(pool, timeout_s=0.05)
        release.set()
        assert (await holder).body == OK
        assert pool._slots._taken == 0
        assert not pool._slots._waiters


async def test_a_compression_bomb_answering_an_upload_is_a_502_too(
    make_gateway: GatewayFactory,
) -> None:
    """Uploads go through aiohttp's client: its answers are capped decoded, as the lean
    client's are."""
    bomb = gzip.compress(b"{" * 20_000_000)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(bomb, b"Content-Encoding: gzip\r\n"))
        await writer.drain()
        await reader.read()

    async with upstream(answer) as served:
        gateway = await make_gateway(upstream=served.url)
        form = aiohttp.FormData()
        form.add_field("fileData", b"x" * 100, filename="a.bin")
        response = await gateway.post(UPLOAD_PATH, data=form)
        message = await envelope_of(response, 502, "upstream_bad_response")
        assert "max_response_bytes" in message


async def test_a_name_with_several_addresses_connects_to_the_one_that_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The resolver's first address refuses (as an IPv6 route may); the next one is tried."""
    async with upstream(answering()) as closed:
        refusing = URL(closed.url).port
    async with upstream(answering(ok())) as served:
        port = URL(served.url).port
        loop = asyncio.get_running_loop()

        async def resolve(host: str, port_asked: int, **_: Any) -> list[Any]:
            stream = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
            return [(*stream, ("127.0.0.1", refusing)), (*stream, ("127.0.0.1", port))]

        monkeypatch.setattr(loop, "getaddrinfo", resolve)
        assert (await call(pool_for(f"http://platform.test:{port}"))).body == OK


async def test_direct_calls_make_no_aiohttp_session(make_gateway: GatewayFactory) -> None:
    async with upstream(answering(ok(), ok())) as served:
        gateway = await make_gateway(upstream=served.url)
        assert (await gateway.get(ECHO_PATH)).status == 200
        assert gateway.app[UPSTREAM]._sessions.aiohttp._sessions == {}
