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

from tests.support.processes import GatewayProcess, StartGateway, write_config
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def connected(
    gateway: GatewayProcess, url: str, count: int, within_s: float
) -> AsyncIterator[list[Connection]]:
    """`count` callers connect to `url` at once while the gateway's process is stopped;
    yields the connections the kernel completed within `within_s` (all of them: as soon as
    they are), with the gateway running again. They are closed at the end."""
    port = URL(url).port
    os.kill(gateway.process.pid, signal.SIGSTOP)
    try:
        attempts = [
            asyncio.create_task(asyncio.open_connection("127.0.0.1", port)) for _ in range(count)
        ]
        done, pending = await asyncio.wait(attempts, timeout=within_s)
        for attempt in pending:
            attempt.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        os.kill(gateway.process.pid, signal.SIGCONT)
    held = [attempt.result() for attempt in done if attempt.exception() is None]
    try:
        yield held
    finally:
        for _, writer in held:
            writer.close()


async def statuses_of(held: list[Connection]) -> list[bytes]:
    """The status line each connection is answered with."""

    async def status_of(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        return await reader.readline()

    return await asyncio.gather(*(status_of(reader, writer) for reader, writer in held))


def somaxconn() -> int:
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


@pytest.mark.skipif(somaxconn() < 300, reason="the kernel caps every backlog below 300")
async def test_hundreds_of_callers_connecting_at_once_are_all_held_and_served(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(write_config(tmp_path, "https://platform.invalid"))
    # aiohttp's own backlog, 128, would hold 129 of them: the rest would wait a second and more.
    async with connected(gateway, gateway.url, 300, within_s=20) as held:
        assert len(held) == 300
        assert set(await statuses_of(held)) == {b"HTTP/1.1 200 OK\r\n"}


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
    # The ones past the backlog never connect while the gateway is stopped: a window to count
    # in, not a wait for something to happen.
    async with connected(gateway, url, 40, within_s=0.5) as held:
        await assert_backlog_of_16(held)


LISTEN_WITH_BACKLOG = "listen: {host: 127.0.0.1, port: 0, backlog: 16}"


async def assert_backlog_of_16(held: list[Connection]) -> None:
    # A backlog of 16 completes 17 handshakes at most (one of them perhaps a worker's own
    # connection to the sandbox); the default would have completed all 40.
    assert 8 <= len(held) <= 17
    statuses = await statuses_of(held)
    assert all(status.startswith(b"HTTP/1.1 ") for status in statuses), statuses


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
    async with connected(gateway, gateway.sandbox_url, 40, within_s=0.5) as held:
        await assert_backlog_of_16(held)


@pytest.mark.skipif(somaxconn() >= 65535, reason="the kernel allows any backlog")
async def test_a_backlog_above_the_kernels_cap_is_warned_of(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    config = write_config(tmp_path, "https://platform.invalid")
    text = config.read_text().replace("port: 0}", "port: 0, backlog: 65535}", 1)
    config.write_text(text)
    gateway = await start_gateway(config)
    await gateway.wait_for_log(
        f"listen.backlog is 65535, but the kernel holds at most {somaxconn()} (net.core.somaxconn)"
    )
    assert "sandbox.listen.backlog" not in gateway.log
