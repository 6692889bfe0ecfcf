"""A caller at `requests_per_s: 20, scope: shared` gets 20 requests through in a second, not
20 in each process: through `--workers 2`, and through two replicas on one Redis."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.paths import SANDBOX_ECHO as ECHO
from tests.support.processes import GatewayProcess, StartGateway, write_config
from tests.support.redis_server import RedisServer

# Two or three gateway processes, and 60 requests that must all arrive within the caller's
# window of one second: alone, not beside other tests on the same cores.
pytestmark = [pytest.mark.e2e, pytest.mark.alone]

TOKEN = "orders-token-0123456789abcdef"
ENV = {"ORDERS_TOKEN": TOKEN}
CALLERS = (
    "{orders: {token_env: ORDERS_TOKEN, apps: [demo], allow: ['* /neuopenapi/*'], "
    "rate_limit: {requests_per_s: 20, scope: shared}}}"
)
REQUESTS = 60
_WORKER = re.compile(r"worker=(\d+)")


def shared_config(directory: Path, redis_server: RedisServer) -> Path:
    return write_config(
        directory,
        # The 60 requests at once open about as many connections to Redis: a timeout long
        # enough for a busy machine, or some would be counted in their process instead.
        cache=f"{{backend: redis, url: '{redis_server.url}', timeout_s: 3}}",
        callers=CALLERS,
        shutdown="{drain_s: 0}",
    )


async def warmed(url: str, connections: int) -> aiohttp.ClientSession:
    """A session with `connections` connections open to the gateway, so that the requests
    that count arrive together, not one connection set-up after another; the kernel hands
    each to whichever process accepts it."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))

    async def health() -> None:
        async with session.get(url + "/healthz") as response:
            assert response.status == 200

    await asyncio.gather(*(health() for _ in range(connections)))
    return session


async def ask(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any], str]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.get(url + ECHO, params={"a": "1"}, headers=headers) as response:
        return response.status, await response.json(), response.headers.get("Retry-After", "")


def assert_twenty_of_sixty(answers: list[tuple[int, dict[str, Any], str]]) -> None:
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) == 20, statuses
    refused = [(body, retry) for status, body, retry in answers if status == 429]
    assert len(refused) == REQUESTS - 20
    for body, retry_after in refused:
        assert body["error"] == "rate_limited"
        assert body["responseHeader"]["status"] == 429
        assert int(retry_after) >= 1


async def fallbacks(url: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/metrics") as response,
    ):
        text = await response.text()
    [line] = [x for x in text.splitlines() if x.startswith("neu_gateway_rate_limit_fallbacks")]
    return line


async def test_two_workers_let_a_shared_rate_through_once(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    gateway = await start_gateway(
        shared_config(tmp_path, redis_server), env=ENV, extra_args=("--workers", "2")
    )
    session = await warmed(gateway.url, REQUESTS)
    try:
        answers = await asyncio.gather(*(ask(session, gateway.url) for _ in range(REQUESTS)))
    finally:
        await session.close()
    assert_twenty_of_sixty(answers)
    await gateway.wait_for_count(f"path={ECHO} ", REQUESTS)
    answered_by = {
        int(match.group(1))
        for line in gateway.log_lines
        if f"path={ECHO} " in line and (match := _WORKER.search(line))
    }
    assert answered_by == {0, 1}, "both workers answered"
    assert await fallbacks(gateway.url) == (
        'neu_gateway_rate_limit_fallbacks_total{caller="orders"} 0.0'
    )


async def test_two_replicas_on_one_redis_let_a_shared_rate_through_once(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    replicas: list[GatewayProcess] = [
        await start_gateway(shared_config(tmp_path / name, redis_server), env=ENV)
        for name in ("a", "b")
    ]
    sessions = [await warmed(replica.url, REQUESTS // 2) for replica in replicas]
    try:
        answers = await asyncio.gather(
            *(ask(sessions[i % 2], replicas[i % 2].url) for i in range(REQUESTS))
        )
    finally:
        for session in sessions:
            await session.close()
    assert_twenty_of_sixty(answers)
    for replica in replicas:
        assert (await fallbacks(replica.url)).endswith(" 0.0")
