"""Two gateway replicas on Redis behind Sentinel, and on a Redis Cluster, while the primary
they write to is killed mid-traffic: every code is exchanged once, every callback the platform
sent is delivered exactly once, and nothing is lost.

The platform is the sandbox (it sends each payment callback again until it is answered 200,
as the platform does); the service behind the gateway counts what it is delivered. Its
deliveries are refused until after the failover, so that callbacks accepted before it are
still pending in Redis when the primary dies.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisClusterException, RedisError

from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import Settings
from tests.e2e.test_replicas import exchange, user_info
from tests.support.paths import TOKEN, TRADE
from tests.support.platform_double import APPID, SECRET
from tests.support.processes import ENV_SECRET, GatewayProcess, StartGateway, write_config
from tests.support.redis_ha import ClusterSet, SentinelSet
from tests.support.waiting import until_answers

pytestmark = [pytest.mark.e2e, pytest.mark.long]
PASSWORD = "failover-s3cret"
_CALLBACKS = re.compile(r"callbacks listening on (http://\S+)")
# Login and payment rounds once the new primary is in place, through the mended replicas.
ROUNDS_AFTER = 3
DELIVERED_WITHIN_S = 60


@dataclass
class Service:
    """The internal service the callbacks are delivered to: closed until told to open."""

    open: bool = False
    delivered: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        if not self.open:
            return web.Response(status=503)
        self.delivered.append(request.headers["Idempotency-Key"])
        return web.Response(text="ok")


# outTradeNo is unique per merchant: one sequence for the whole test.
ORDERS = itertools.count()


@dataclass
class Traffic:
    codes: list[str] = field(default_factory=list)
    open_ids: list[str] = field(default_factory=list)
    trades: list[str] = field(default_factory=list)
    refused_exchanges: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def platform(aiohttp_server: Any) -> TestServer:
    settings = Settings(notify_backoff_s=0.05, notify_attempts=40)
    server: TestServer = await aiohttp_server(create_sandbox_app({APPID: SECRET}, settings))
    return server


@pytest.fixture
async def service(aiohttp_server: Any) -> Service:
    service = Service()
    app = web.Application()
    app.router.add_post("/payments", service.handle)
    server = await aiohttp_server(app)
    service.url = str(server.make_url("/payments"))
    return service


def base(platform: TestServer) -> str:
    return str(platform.make_url("")).rstrip("/")


async def start_replicas(
    start_gateway: StartGateway,
    tmp_path: Path,
    platform: TestServer,
    service: Service,
    cache: str,
) -> list[GatewayProcess]:
    replicas = []
    for name in ("a", "b"):
        config = write_config(
            tmp_path / name,
            base(platform),
            app_callbacks=f"{{verify_sign: true, deliver_to: '{service.url}'}}",
            cache=cache,
            callbacks=(
                "{listen: {port: 0}, backoff_s: 0.05, max_backoff_s: 0.2, max_attempts: 1000, "
                "timeout_s: 1}"
            ),
        )
        env = {"NEU_REDIS_PASSWORD": PASSWORD, **ENV_SECRET}
        replicas.append(await start_gateway(config, env=env))
    return replicas


def callbacks_url(gateway: GatewayProcess) -> str:
    match = _CALLBACKS.search(gateway.log)
    assert match, gateway.log
    return match.group(1)


async def login_round(
    session: aiohttp.ClientSession,
    platform: TestServer,
    replicas: list[GatewayProcess],
    traffic: Traffic,
    across: bool,
) -> None:
    """A login whose code is sent twice at once: to both replicas (`across`), or to one."""
    async with session.post(base(platform) + "/sandbox/login", data={"user": "u"}) as response:
        login = (await response.json())["response"]
    code = login["code"]
    traffic.codes.append(code)
    traffic.open_ids.append(login["openId"])
    targets = replicas if across else [replicas[len(traffic.codes) % 2]] * 2
    answers = await asyncio.gather(*(exchange(session, gateway, code) for gateway in targets))
    for answer in answers:
        if answer["responseHeader"]["status"] != 200:
            traffic.refused_exchanges.append(answer)


async def payment_round(
    session: aiohttp.ClientSession,
    platform: TestServer,
    replicas: list[GatewayProcess],
    traffic: Traffic,
) -> None:
    """A trade through one replica, paid, its callback sent by the platform to the other."""
    gateway = replicas[len(traffic.trades) % 2]
    listener = replicas[(len(traffic.trades) + 1) % 2]
    async with session.post(base(platform) + "/sandbox/login", data={"user": "payer"}) as r:
        open_id = (await r.json())["response"]["openId"]
    trade = {
        "outTradeNo": f"order-{next(ORDERS)}",
        "amount": "500",
        "currency": "SGD",
        "openId": open_id,
        "notifyUrl": callbacks_url(listener) + "/callbacks/demo/pay",
    }
    async with session.post(gateway.url + TRADE, data=trade) as response:
        body = await response.json()
    assert body["responseHeader"]["status"] == 200, body
    trade_no = body["response"]["tradeNo"]
    traffic.trades.append(trade_no)
    pay = f"{base(platform)}/sandbox/trades/{trade_no}/pay"
    async with session.post(pay, data={"result": "succeeded"}) as response:
        assert response.status == 200


async def token_calls(session: aiohttp.ClientSession, platform: TestServer) -> int:
    async with session.get(base(platform) + "/sandbox/stats") as response:
        calls: int = (await response.json())["response"]["calls"].get(TOKEN, 0)
        return calls


@dataclass
class SharedRedis:
    """What the test needs of either Redis: the gateway's cache section, how many deliveries
    the outbox holds pending, and how to kill the primary the outbox lives on."""

    cache: str
    pending: Callable[[], Awaitable[int]]
    kill: Callable[[], Awaitable[None]]
    failed_over: Callable[[], Awaitable[None]]


@pytest.fixture
async def behind_sentinel(redis_sentinel_set: SentinelSet) -> AsyncIterator[SharedRedis]:
    sentinels = redis_sentinel_set
    nodes = ", ".join(f"'{node}'" for node in sentinels.sentinel_nodes)
    cache = (
        f"{{backend: redis, safety_margin_s: 0, sentinel: {{master: {sentinels.master_name}, "
        f"nodes: [{nodes}], password_env: NEU_REDIS_PASSWORD}}}}"
    )
    addresses = [
        (host, int(port)) for host, port in (n.split(":") for n in sentinels.sentinel_nodes)
    ]
    sentinel = Sentinel(addresses, password=PASSWORD, socket_timeout=1)
    master: Redis = sentinel.master_for(sentinels.master_name)
    killed: list[int] = []

    async def pending() -> int:
        try:
            return int(await master.zcard("neu:outbox:due"))
        except RedisError:
            return -1  # asked during the failover: not known yet

    async def kill() -> None:
        killed.append(await sentinels.kill_master())

    async def failed_over() -> None:
        await sentinels.failed_over(killed[0])

    try:
        yield SharedRedis(cache, pending, kill, failed_over)
    finally:
        await master.aclose()
        for each in sentinel.sentinels:
            await each.aclose()


@pytest.fixture
async def on_a_cluster(redis_cluster_set: ClusterSet) -> AsyncIterator[SharedRedis]:
    cluster_set = redis_cluster_set
    nodes = ", ".join(f"'{node}'" for node in cluster_set.startup_nodes)
    cache = (
        f"{{backend: redis, safety_margin_s: 0, cluster: {{nodes: [{nodes}], "
        "password_env: NEU_REDIS_PASSWORD}}"
    )
    startup = [
        ClusterNode(host, int(port))
        for host, port in (n.split(":") for n in cluster_set.startup_nodes)
    ]
    client = RedisCluster(startup_nodes=startup, password=PASSWORD, socket_timeout=1)
    outbox_key = "neu:{outbox}:due"
    killed: list[int] = []

    async def pending() -> int:
        try:
            return int(await client.zcard(outbox_key))
        except (RedisError, RedisClusterException):
            return -1  # asked during the failover: not known yet

    async def kill() -> None:
        # The primary of the outbox's slot: every callback and delivery goes through it.
        killed.append(await cluster_set.kill_primary_for(outbox_key))

    async def failed_over() -> None:
        await cluster_set.failed_over(outbox_key, killed[0])

    try:
        yield SharedRedis(cache, pending, kill, failed_over)
    finally:
        await client.aclose()


async def failover_loses_nothing(
    redis: SharedRedis,
    start_gateway: StartGateway,
    tmp_path: Path,
    platform: TestServer,
    service: Service,
) -> None:
    replicas = await start_replicas(start_gateway, tmp_path, platform, service, redis.cache)
    before, during, after = Traffic(), Traffic(), Traffic()
    async with aiohttp.ClientSession() as session:
        for _ in range(4):
            await login_round(session, platform, replicas, before, across=True)
            await payment_round(session, platform, replicas, before)
        assert not before.refused_exchanges

        async def accepted_before() -> bool:
            return await redis.pending() == len(before.trades)

        await until_answers(accepted_before, timeout_s=20)

        await redis.kill()
        failover = asyncio.ensure_future(redis.failed_over())
        while not failover.done():
            await login_round(session, platform, replicas, during, across=False)
            await payment_round(session, platform, replicas, during)
        await failover
        # A code sent to one replica is exchanged once even while Redis is away.
        assert not during.refused_exchanges, during.refused_exchanges

        async def caches_answer() -> bool:
            # Each replica uses Redis again (it asks once a second after a failure, and its
            # cluster client learns the new slots from its own next error).
            answers = [await user_info(session, g, before.open_ids[0]) for g in replicas]
            return all(status == 200 for status, _ in answers)

        await until_answers(caches_answer, timeout_s=20)
        for code in before.codes:
            # Cached before the failover, and still cached after it: no second exchange.
            answers = await asyncio.gather(*(exchange(session, g, code) for g in replicas))
            assert {a["responseHeader"]["status"] for a in answers} == {200}, answers
        for _ in range(ROUNDS_AFTER):
            await login_round(session, platform, replicas, after, across=True)
            await payment_round(session, platform, replicas, after)
        assert not after.refused_exchanges, after.refused_exchanges

        service.open = True
        trades = before.trades + during.trades + after.trades

        async def all_delivered() -> bool:
            return {key.partition(":")[0] for key in service.delivered} == set(trades) and (
                await redis.pending() == 0
            )

        await until_answers(all_delivered, timeout_s=DELIVERED_WITHIN_S)
        codes = before.codes + during.codes + after.codes
        assert await token_calls(session, platform) == len(codes), "each code exchanged once"
    twice = {key: n for key, n in Counter(service.delivered).items() if n > 1}
    assert not twice, f"delivered more than once: {twice}"
    assert len(during.trades) >= 1, "the failover came before any traffic"


@pytest.mark.parametrize("redis_sentinel_set", [{"password": PASSWORD}], indirect=True)
async def test_a_sentinel_failover_loses_nothing(
    behind_sentinel: SharedRedis,
    start_gateway: StartGateway,
    tmp_path: Path,
    platform: TestServer,
    service: Service,
) -> None:
    await failover_loses_nothing(behind_sentinel, start_gateway, tmp_path, platform, service)


@pytest.mark.parametrize("redis_cluster_set", [{"password": PASSWORD}], indirect=True)
async def test_a_cluster_failover_loses_nothing(
    on_a_cluster: SharedRedis,
    start_gateway: StartGateway,
    tmp_path: Path,
    platform: TestServer,
    service: Service,
) -> None:
    await failover_loses_nothing(on_a_cluster, start_gateway, tmp_path, platform, service)
