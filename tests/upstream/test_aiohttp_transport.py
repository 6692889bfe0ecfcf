"""aiohttp's client as a transport (proxies, uploads), against loopback upstreams: what it
refuses as the lean client does, and each failure named as the gateway's error. The map of
every aiohttp exception is tests/upstream/test_exception_map.py."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config.schema import PoolConfig
from gateway.core.errors import (
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamTlsError,
    UpstreamUnreachable,
)
from gateway.upstream.aiohttp_transport import AiohttpTransport
from gateway.upstream.transport import Answer
from tests.support.platform_double import PlatformDouble
from tests.support.scripted_server import OK, answering, ok, read_request, upstream
from tests.upstream.helpers import app_for, request_to

PATH = "/neuopenapi/x"


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    made = AiohttpTransport(PoolConfig(max_connections=4, keepalive_s=30), 1.0, 5.0)
    yield made
    await made.close()


async def send(transport: AiohttpTransport, base: str, **request: Any) -> Answer:
    return await transport.send(request_to(app_for(base), f"{base}{PATH}", **request))


async def test_an_upload_reaches_the_platform_whole(
    transport: AiohttpTransport, platform: PlatformDouble, platform_url: str
) -> None:
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append("hello")
    part.set_content_disposition("form-data", name="note")
    answer = await send(transport, platform_url, method="POST", body=writer)
    assert answer.status == 200
    assert platform.last.params["note"] == "hello"


async def test_an_answer_comes_decoded_with_the_headers_as_sent(
    transport: AiohttpTransport,
) -> None:
    compressed = ok(gzip.compress(OK), b"Content-Encoding: gzip\r\nKeep-Alive: timeout=5\r\n")
    async with upstream(answering(compressed)) as served:
        answer = await send(transport, served.url)
    assert (answer.status, answer.body) == (200, OK)
    assert answer.headers["Keep-Alive"] == "timeout=5"


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        pytest.param(ok(extra=b"X-Odd: a\x01b\r\n"), "control character", id="control"),
        pytest.param(b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n", "101", id="101"),
        pytest.param(b"HTTP/1.1 600 Beyond\r\nContent-Length: 0\r\n\r\n", "600", id="600"),
        pytest.param(ok(b"x" * 2000), "max_response_bytes", id="long by its length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 2000, "max_response_bytes", id="long to its end"
        ),
        pytest.param(
            ok(gzip.compress(b"{" * 100_000), b"Content-Encoding: gzip\r\n"),
            "max_response_bytes",
            id="long decoded",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "transfer coding", id="gzip"
        ),
    ],
)
async def test_what_the_lean_client_refuses_is_refused_alike(
    transport: AiohttpTransport, answer: bytes, says: str
) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with upstream(once) as served:
        with pytest.raises(UpstreamBadResponse, match=says):
            await send(transport, served.url, max_response_bytes=1000)


async def test_no_answer_in_the_requests_time_is_a_timeout(transport: AiohttpTransport) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()

    async with upstream(silent) as served:
        with pytest.raises(UpstreamTimeout):
            await send(transport, served.url, timeout_s=0.05)


async def test_a_refused_connection_is_unreachable_and_unsent(
    transport: AiohttpTransport,
) -> None:
    async with upstream(answering()) as served:
        closed = served.url
    with pytest.raises(UpstreamUnreachable) as raised:
        await send(transport, closed)
    assert raised.value.unsent


async def test_a_get_on_a_dropped_kept_alive_connection_is_not_sent_again(
    transport: AiohttpTransport,
) -> None:
    """The gateway's retries are the only ones: aiohttp's own resend is off."""
    requests: list[bytes] = []

    async def once_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_request(reader))
        writer.write(ok())
        await writer.drain()
        requests.append(await read_request(reader))

    async with upstream(once_then_drop) as served:
        assert (await send(transport, served.url)).body == OK
        with pytest.raises(UpstreamUnreachable):
            await send(transport, served.url)
        assert len(requests) == 2
        assert served.connections == 1


async def test_a_proxy_that_is_down_is_named(transport: AiohttpTransport) -> None:
    async with upstream(answering()) as proxy:
        closed = proxy.url
    app = app_for("http://platform.test", proxy=closed)
    with pytest.raises(UpstreamUnreachable, match="proxy could not be reached") as raised:
        await transport.send(request_to(app, f"http://platform.test{PATH}"))
    assert raised.value.unsent


async def test_a_proxy_that_refuses_the_tunnel_is_named(transport: AiohttpTransport) -> None:
    refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
    async with upstream(answering(refusal, keep=False)) as proxy:
        app = app_for("https://platform.test", proxy=proxy.url)
        with pytest.raises(UpstreamUnreachable, match="HTTP 407") as raised:
            await transport.send(request_to(app, f"https://platform.test{PATH}"))
    assert raised.value.unsent


async def test_tls_files_gone_bad_are_the_gateways_own_failure(
    transport: AiohttpTransport, tmp_path: Path
) -> None:
    broken = tmp_path / "ca.pem"
    broken.write_text("not a certificate")
    app = app_for("https://platform.test", tls={"ca_file": str(broken)}, proxy="env")
    with pytest.raises(UpstreamTlsError, match="own TLS setup failed"):
        await transport.send(request_to(app, f"https://platform.test{PATH}"))


async def test_sessions_are_made_when_needed_and_a_renew_retires_them(
    platform_url: str,
) -> None:
    transport = AiohttpTransport(PoolConfig(), 1.0, 5.0)
    assert transport._sessions == {}
    await send(transport, platform_url)
    [first] = transport._sessions.values()
    assert first.connector is not None
    assert first.connector.limit == PoolConfig().max_connections
    transport.renew()
    assert transport._sessions == {}
    await send(transport, platform_url)
    [second] = transport._sessions.values()
    assert second is not first
    assert not first.closed  # calls in flight may still use it
    await transport.close()
    assert first.closed
    assert second.closed
