"""Both transports from one pool config: one cap (pool.max_connections) for each, renewed on
a reload and closed together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.config.schema import PoolConfig
from gateway.upstream.sessions import Sessions
from gateway.upstream.tls import TlsSetupError
from gateway.upstream.transport import Transport
from tests.support.scripted_server import OK, ok, read_request, upstream
from tests.upstream.helpers import app_for, request_to


@pytest.mark.parametrize("which", ["lean", "aiohttp"])
async def test_each_transport_holds_at_most_pool_max_connections(which: str) -> None:
    release = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(ok())
            await writer.drain()

    sessions = Sessions(PoolConfig(max_connections=2), 1.0, 5.0)
    transport: Transport = getattr(sessions, which)
    async with upstream(held) as served:
        app = app_for(served.url)
        calls = [
            asyncio.ensure_future(transport.send(request_to(app, f"{served.url}/neuopenapi/x")))
            for _ in range(5)
        ]
        await served.until(lambda: served.connections == 2)
        release.set()
        answers = await asyncio.gather(*calls)
        assert [answer.body for answer in answers] == [OK] * 5
        assert served.most_open == 2
    await sessions.close()


def test_tls_files_are_checked_before_any_call(tmp_path: Path) -> None:
    Sessions.check_tls(app_for("https://platform.test"))
    broken = tmp_path / "ca.pem"
    broken.write_text("not a certificate")
    with pytest.raises(TlsSetupError, match=r"apps\.demo\.tls\.ca_file"):
        Sessions.check_tls(app_for("https://platform.test", tls={"ca_file": str(broken)}))


async def test_a_renew_lets_idle_connections_go_and_close_ends_everything() -> None:
    async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(ok())
            await writer.drain()

    sessions = Sessions(PoolConfig(), 1.0, 5.0)
    async with upstream(answers) as served:
        app = app_for(served.url)
        request = request_to(app, f"{served.url}/neuopenapi/x")
        await sessions.lean.send(request)
        await sessions.aiohttp.send(request)
        assert served.open == 2
        sessions.renew()
        # The lean client's idle connection goes now; aiohttp's session is kept for calls
        # in flight until the end.
        await served.until(lambda: served.open == 1)
        await sessions.close()
        await served.until(lambda: served.open == 0)
