"""A caller far past a rate shared through Redis: answered 429 at once, and its flood does not
become one on the Redis every replica shares (the token cache's too)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from tests.abuse.conftest import StartTarget
from tests.support.rawhttp import statuses, until_closed
from tests.support.redis_server import RedisServer

# The module's tests run on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

CALLER_TOKEN = "orders-token-0123456789abcdef"
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
CONNECTIONS = 8
PIPELINED = 500


async def scripts_run(redis: RedisServer) -> int:
    """The scripts Redis has run: a rate-limit count is one (INFO commandstats)."""
    client = aioredis.from_url(redis.url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


async def test_a_flood_past_a_shared_rate_is_refused_without_flooding_redis(
    start_target: StartTarget,
) -> None:
    redis = RedisServer()
    await redis.start()
    try:
        target = await start_target(
            env={"ORDERS_TOKEN": CALLER_TOKEN},
            cache=f"{{backend: redis, url: '{redis.url}'}}",
            callers=(
                "{orders: {token_env: ORDERS_TOKEN, apps: [demo], allow: ['* /neuopenapi/*'], "
                "rate_limit: {requests_per_s: 1, burst: 5, scope: shared}}}"
            ),
        )
        request = (
            b"GET /neuopenapi/sandbox/echo?a=1 HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + CALLER_TOKEN.encode() + b"\r\n\r\n"
        )
        before = await scripts_run(redis)
        async with target.under_abuse(max_growth_mb=24):
            answers = await asyncio.gather(
                *(
                    until_closed(
                        target.port,
                        request * PIPELINED + HEALTH[:-2] + b"Connection: close\r\n\r\n",
                    )
                    for _ in range(CONNECTIONS)
                )
            )
        answered = [status for answer in answers for status in statuses(answer)]
        assert len(answered) == CONNECTIONS * (PIPELINED + 1)
        # The burst of 5 (and one more for each second the flood lasts), the health checks.
        assert 5 <= answered.count(200) - CONNECTIONS <= 5 + 10
        # Once the count is full, each process refuses from memory until a place frees: a
        # few scripts a refusal period, not one for each of the 4000 requests.
        assert await scripts_run(redis) - before < 100
        assert "unavailable" not in target.process.log_since(target.mark)
    finally:
        await redis.stop()
