"""The listener's backlog (`listen.backlog`): callers who connect all at once are held by the
kernel until the gateway accepts them. Past the backlog the kernel drops their handshakes, and
each dropped one costs its caller a second or more of retransmission.

The gateway is stopped (SIGSTOP) while the callers connect, so only the kernel answers them:
it completes as many handshakes as the backlog holds, plus one.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from yarl import URL

from tests.processes import GatewayProcess, StartGateway, write_config
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def stopped(gateway: GatewayProcess) -> AsyncIterator[None]:
    os.kill(gateway.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(gateway.process.pid, signal.SIGCONT)


async def connect(url: str, count: int, within_s: float) -> list[Connection]:
    """The connections of `count` callers connecting at once to `url` that the kernel
    completed within `within_s` (all of them: as soon as they are)."""
    port = URL(url).port
    attempts = [
        asyncio.create_task(asyncio.open_connection("127.0.0.1", port)) for _ in range(count)
    ]
    done, pending = await asyncio.wait(attempts, timeout=within_s)
    for attempt in pending:
        attempt.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [attempt.result() for attempt in done if attempt.exception() is None]


async def status_of(connection: Connection) -> bytes:
    reader, writer = connection
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
    status = await reader.readline()
    writer.close()
    return status


def somaxconn() -> int:
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


@pytest.mark.skipif(somaxconn() < 300, reason="the kernel caps every backlog below 300")
async def test_hundreds_of_callers_connecting_at_once_are_all_held_and_served(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(write_config(tmp_path, "https://platform.invalid"))
    # aiohttp's own backlog, 128, would hold 129 of them: the rest would wait a second and more.
    async with stopped(gateway):
        held = await connect(gateway.url, 300, within_s=20)
    assert len(held) == 300
    statuses = await asyncio.gather(*(status_of(connection) for connection in held))
    assert set(statuses) == {b"HTTP/1.1 200 OK\r\n"}


@pytest.mark.parametrize("listener", ["listen", "callbacks.listen"])
async def test_the_backlog_is_the_configured_one(
    tmp_path: Path, start_gateway: StartGateway, listener: str
) -> None:
    config = write_config(tmp_path, "https://platform.invalid", callbacks="{listen: {port: 0}}")
    text = config.read_text()
    if listener == "listen":
        text = text.replace("listen: {host: 127.0.0.1, port: 0}", LISTEN_WITH_BACKLOG, 1)
    else:
        text = text.replace(
            "callbacks: {listen: {port: 0}}", f"callbacks: {{{LISTEN_WITH_BACKLOG}}}"
        )
    config.write_text(text)
    gateway = await start_gateway(config)
    url = gateway.url
    if listener == "callbacks.listen":
        await gateway.wait_for_log("callbacks listening on ")
        found = re.search(r"callbacks listening on (http://\S+)", gateway.log)
        assert found is not None
        url = found.group(1)
    async with stopped(gateway):
        # The ones past the backlog never connect while the gateway is stopped: a window to
        # count in, not a wait for something to happen.
        held = await connect(url, 40, within_s=0.5)
    assert 17 <= len(held) < 40
    statuses = await asyncio.gather(*(status_of(connection) for connection in held))
    assert len(statuses) == len(held)
    assert all(status.startswith(b"HTTP/1.1 ") for status in statuses), statuses


LISTEN_WITH_BACKLOG = "listen: {host: 127.0.0.1, port: 0, backlog: 16}"


async def test_the_sandbox_that_workers_share_has_the_configured_backlog(
    tmp_path: Path, start_gateway: StartGateway, redis_server: RedisServer
) -> None:
    # With --workers the supervisor runs the embedded sandbox for all of them.
    config = write_config(
        tmp_path, cache=f"{{backend: redis, url: '{redis_server.url}'}}", workers="2"
    )
    config.write_text(
        config.read_text().replace(
            "sandbox: {listen: {port: 0}", "sandbox: {listen: {port: 0, backlog: 16}"
        )
    )
    gateway = await start_gateway(config)
    async with stopped(gateway):
        held = await connect(gateway.sandbox_url, 40, within_s=0.5)
    assert 17 <= len(held) < 40
    statuses = await asyncio.gather(*(status_of(connection) for connection in held))
    assert all(status.startswith(b"HTTP/1.1 ") for status in statuses), statuses
