"""A rate_limit of `scope: shared`: counted once in Redis for every process (here, two
CallerRates on one real redis-server), refused from memory once the count is full, counted in
each process while Redis fails (and said so: a warning, neu_gateway_rate_limit_fallbacks_total)
without a wait on Redis for each request, and shared again once it is back."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from gateway.config.errors import ConfigError
from gateway.config.load import from_mapping
from gateway.config.model import RedisTarget
from gateway.core.access import Caller
from gateway.core.errors import RateLimited
from gateway.core.ratelimit import Rate
from gateway.core.secrets import Secret
from gateway.egress.ratelimits import RETRY_SHARED_AFTER_S, CallerRates
from gateway.runtime.app import create_app
from gateway.runtime.reload import apply_config
from gateway.shared.rate_storage import SharedCounter
from tests.conftest import guarded
from tests.shared_state.test_rate_storage import silent_server
from tests.support.clock import MutableClock
from tests.support.paths import ECHO
from tests.support.platform_double import APPID, SECRET, PlatformDouble
from tests.support.redis_server import RedisServer

# Redis's answers may take long on a machine running the suite on every core: a timeout here
# would count in each process instead, which these tests do not mean to try.
LOADED_MACHINE_S = 5.0
Client = TestClient[Any, Any]
TOKEN = "orders-token-0123456789abcdef"
ORDERS = {"Authorization": f"Bearer {TOKEN}"}
ENVIRON = {"S": SECRET, "ORDERS_TOKEN": TOKEN}
LOGGER = "neu_gateway.ratelimits"


def caller(per_s: float = 20, burst: int = 20, name: str = "orders") -> Caller:
    return Caller(
        name=name,
        token=Secret(TOKEN),
        apps=frozenset({"demo"}),
        routes=(),
        rate=Rate(per_s, burst, shared=True),
    )


async def admitted(rates: list[CallerRates], who: Caller, count: int) -> list[str]:
    """Each check's outcome, spread over the processes in turn: "ok" or its Retry-After."""
    outcomes = []
    for i in range(count):
        try:
            await rates[i % len(rates)].check(who)
            outcomes.append("ok")
        except RateLimited as refused:
            outcomes.append((refused.headers or {}).get("Retry-After", "none"))
    return outcomes


async def counted_in_redis(url: str) -> int:
    """The rate-limit scripts Redis has run (INFO commandstats)."""
    client = aioredis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


async def test_two_processes_on_one_redis_let_the_rate_through_once(
    redis_server: RedisServer,
) -> None:
    clock = MutableClock()
    processes = [
        CallerRates(
            clock, SharedCounter(RedisTarget.of_url(redis_server.url, timeout_s=LOADED_MACHINE_S))
        )
        for _ in "ab"
    ]
    try:
        outcomes = await admitted(processes, caller(), 60)
        assert outcomes.count("ok") == 20, "20 in all, not 20 in each process"
        assert set(outcomes[20:]) == {"1"}
        # A fractional rate: one request every two seconds, in a window of 2 s.
        # (Retry-After: the window's remaining whole seconds, 2 or 1 as the clock falls.)
        slow = await admitted(processes, caller(0.5, 1, "slow"), 3)
        assert slow[0] == "ok"
        assert set(slow[1:]) <= {"1", "2"}, slow
    finally:
        for rates in processes:
            await rates.close()


async def test_a_caller_past_its_shared_rate_is_refused_without_asking_redis_again(
    redis_server: RedisServer,
) -> None:
    rates = CallerRates(
        MutableClock(),
        SharedCounter(RedisTarget.of_url(redis_server.url, timeout_s=LOADED_MACHINE_S)),
    )
    try:
        assert await admitted([rates], caller(1, 1), 2) == ["ok", "1"]
        asked = await counted_in_redis(redis_server.url)
        assert await admitted([rates], caller(1, 1), 500) == ["1"] * 500
        assert await counted_in_redis(redis_server.url) == asked
    finally:
        await rates.close()


async def test_while_redis_is_down_each_process_counts_and_says_so_then_shares_again(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    clock = MutableClock()
    fallbacks: list[str] = []
    rates = CallerRates(
        clock,
        SharedCounter(RedisTarget.of_url(redis_server.url, timeout_s=LOADED_MACHINE_S)),
        fallbacks.append,
    )
    try:
        await redis_server.stop()
        # This process's own bucket: the burst, then refusals.
        assert await admitted([rates], caller(), 25) == ["ok"] * 20 + ["1"] * 5
        assert fallbacks == ["orders"] * 25
        unavailable = [r.getMessage() for r in caplog.records if "unavailable" in r.message]
        assert unavailable == [
            f"shared rate limits: redis at {redis_server.url} unavailable (ConnectionError); "
            "each process counts them on its own meanwhile"
        ], "one warning an outage"

        await redis_server.start()
        clock.advance(RETRY_SHARED_AFTER_S)
        assert await admitted([rates], caller(), 25) == ["ok"] * 20 + ["1"] * 5, "a fresh count"
        assert len(fallbacks) == 25, "counted in Redis again"
        assert [r.message for r in caplog.records if "is back" in r.message] == [
            f"shared rate limits: redis at {redis_server.url} is back, counting for every process"
        ]
        client = aioredis.from_url(redis_server.url)
        assert await client.keys("*") == [b"neu:ratelimit:{caller/orders/20/1/second}"]
        await client.aclose()
    finally:
        await rates.close()


async def test_a_redis_that_hangs_costs_one_timeout_a_second_not_one_a_request() -> None:
    async with silent_server() as (port, received):
        clock = MutableClock()
        fallbacks: list[str] = []
        target = RedisTarget.of_url(f"redis://127.0.0.1:{port}/0", "neu:", 0.2)
        rates = CallerRates(clock, SharedCounter(target), fallbacks.append)
        try:
            assert await admitted([rates], caller(), 1) == ["ok"]
            asked = len(received)
            assert asked > 0
            # Within the second after the failure, Redis is not asked: no request waits on it.
            assert await admitted([rates], caller(), 50) == ["ok"] * 19 + ["1"] * 31
            assert len(received) == asked
            assert len(fallbacks) == 51
            clock.advance(RETRY_SHARED_AFTER_S)
            await admitted([rates], caller(), 1)
            assert len(received) > asked, "asked again a second later"
        finally:
            await rates.close()


def document(platform_url: str, redis_url: str, rate: dict[str, Any] | None) -> dict[str, Any]:
    orders: dict[str, Any] = {
        "token_env": "ORDERS_TOKEN",
        "apps": ["demo"],
        "allow": ["* /neuopenapi/*"],
    }
    if rate is not None:
        orders["rate_limit"] = rate
    return {
        "apps": {"demo": {"appid": APPID, "secret_env": "S", "upstream": platform_url}},
        "cache": {"backend": "redis", "url": redis_url, "timeout_s": 0.5},
        "callers": {"orders": orders},
    }


async def statuses(gateway: Client, count: int) -> list[int]:
    found = []
    for _ in range(count):
        async with gateway.get(ECHO, params={"a": "1"}, headers=ORDERS) as response:
            await response.read()
            found.append(response.status)
    return found


async def fallbacks_metric(gateway: Client) -> str:
    metrics = await (await gateway.get("/metrics")).text()
    [line] = [x for x in metrics.splitlines() if x.startswith("neu_gateway_rate_limit_fallbacks")]
    return line


async def test_a_gateway_refuses_past_the_shared_rate_and_counts_its_fallbacks(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble, redis_server: RedisServer
) -> None:
    rate = {"requests_per_s": 0.5, "burst": 2, "scope": "shared"}
    config = from_mapping(document(platform_url, redis_server.url, rate), ENVIRON)
    clock = MutableClock()
    gateway: Client = await aiohttp_client(guarded(create_app(config, clock)))
    assert await fallbacks_metric(gateway) == (
        'neu_gateway_rate_limit_fallbacks_total{caller="orders"} 0.0'
    )
    assert await statuses(gateway, 2) == [200, 200]
    response = await gateway.get(ECHO, params={"a": "1"}, headers=ORDERS)
    assert response.status == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 4
    body = await response.json()
    assert body["error"] == "rate_limited"
    assert body["responseHeader"]["msg"] == (
        "caller 'orders' is over its rate limit (0.5 requests a second, bursts of 2); "
        f"retry in {response.headers['Retry-After']} s"
    )
    assert len(platform.received) == 2, "a refused request is not forwarded"

    await redis_server.stop()
    # Past the refusal's wait (until then it is refused here, Redis or not).
    clock.advance(int(response.headers["Retry-After"]))
    assert await statuses(gateway, 3) == [200, 200, 429], "this process's bucket"
    assert await fallbacks_metric(gateway) == (
        'neu_gateway_rate_limit_fallbacks_total{caller="orders"} 3.0'
    )


async def test_a_reload_that_changes_a_shared_rate_counts_it_afresh(
    aiohttp_client: Any, platform_url: str, redis_server: RedisServer
) -> None:
    def config(rate: dict[str, Any]) -> Any:
        return from_mapping(document(platform_url, redis_server.url, rate), ENVIRON)

    one = {"requests_per_s": 1, "burst": 1, "scope": "shared"}
    gateway: Client = await aiohttp_client(guarded(create_app(config(one), MutableClock())))
    assert await statuses(gateway, 2) == [200, 429]
    apply_config(gateway.app, config({**one, "burst": 3}))
    assert await statuses(gateway, 4) == [200, 200, 200, 429]
    apply_config(gateway.app, config({**one, "scope": "process"}))
    assert await statuses(gateway, 2) == [200, 429], "this process's own bucket"


@pytest.mark.parametrize("name", ["a/b", "{x}", "a:b", "a b", "a*", "-a", "a" * 65])
def test_a_caller_name_cannot_reach_into_another_callers_keys(name: str) -> None:
    # The name is part of the caller's Redis keys (…:{caller/<name>/20/1/second}): a "/"
    # could make two callers' keys one, a brace move the Cluster hash tag.
    doc = document("http://127.0.0.1:9", "redis://127.0.0.1:9/0", {"requests_per_s": 1})
    doc["callers"] = {name: doc["callers"]["orders"]}
    with pytest.raises(ConfigError) as refused:
        from_mapping(doc, ENVIRON)
    assert any(problem.startswith("callers.") for problem in refused.value.problems)
