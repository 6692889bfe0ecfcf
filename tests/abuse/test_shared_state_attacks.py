"""Attacks on the state the gateway shares through Redis: a replica or master that lags or
freezes, a Cluster whose slot's primary refuses writes, a flood of logins while Redis is away,
and hostile cache.sentinel / cache.cluster settings. Each test is an attack; it passes when
the gateway held."""

from __future__ import annotations

import dataclasses
import json
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from gateway.callbacks.outbox import OutboxError, OutboxNotWritable, RedisOutbox
from gateway.callbacks.outbox.redis import outbox_prefix
from gateway.config.model import RedisTarget
from gateway.core import jwt
from gateway.upstream.tokens import RECENT_MAX, CachedAnswer, StoreError, TokenCache
from tests.config.test_json_schema import BASE, loader_accepts, schema_accepts
from tests.support.clock import MutableClock
from tests.support.redis_ha import REPLICATION_ARGS, ClusterSet
from tests.support.redis_server import RedisServer
from tests.support.waiting import until_answers

# The module's tests run on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")
NOW = 1_800_000_000.0
# The schema's defaults (gateway/config/schema.py CacheConfig): timeout_s, wait_timeout_s.
DEFAULT_TIMEOUT_S = 0.5
DEFAULT_WAIT_TIMEOUT_S = 0.5
REFUSED_WRITES = 30


@asynccontextmanager
async def replicated() -> AsyncIterator[tuple[RedisServer, RedisServer]]:
    """A master and its replica, linked as WAIT sees it."""
    master = RedisServer(extra_args=REPLICATION_ARGS)
    await master.start()
    replica = RedisServer(
        extra_args=[*REPLICATION_ARGS, "--replicaof", "127.0.0.1", str(master.port)]
    )
    client = Redis(port=master.port)
    try:
        await replica.start()

        async def linked() -> bool:
            async with client.pipeline(transaction=False) as pipe:
                pipe.set("linked", b"1")
                pipe.execute_command("WAIT", 1, 100)
                return bool((await pipe.execute())[1] == 1)

        await until_answers(linked, timeout_s=10)
        yield master, replica
    finally:
        await client.aclose()
        await replica.stop()
        await master.stop()


async def test_a_lagging_replica_counts_a_failed_delivery_once() -> None:
    """With the default timeouts a write's WAIT outlasts the socket's timeout: a retried
    pipeline would run the outbox's script again, counting one failed attempt three times
    (a delivery dead after a third of callbacks.max_attempts) and holding the worker for
    three timeouts."""
    async with replicated() as (master, replica):
        target = dataclasses.replace(
            RedisTarget.of_url(master.url, "neu:", DEFAULT_TIMEOUT_S),
            wait_replicas=1,
            wait_timeout_s=DEFAULT_WAIT_TIMEOUT_S,
        )
        outbox = RedisOutbox(target)
        reader = Redis(port=master.port)
        try:
            assert await outbox.add("demo", "T1", 2, b"{}", NOW)
            [delivery] = await outbox.due(NOW, 10, lease_s=30)
            replica.pause()
            started = time.monotonic()
            with pytest.raises(OutboxError):
                await outbox.failed(delivery.id, "HTTP 500", NOW + 1, dead=False)
            took_s = time.monotonic() - started
            attempts = await reader.hget(f"neu:outbox:d:{delivery.id}", "attempts")
            assert attempts == b"1", "one failed attempt, counted more than once"
            # Retried, it takes three timeouts and the backoff between them (1.6 s).
            assert took_s < 2.8 * DEFAULT_TIMEOUT_S, f"a refused write took {took_s:.2f} s"
        finally:
            replica.resume()
            await reader.aclose()
            await outbox.close()


async def connections_to(port: int) -> int:
    """Clients connected to the server on `port` now (CLIENT LIST), this probe's own aside."""
    async with Redis(port=port) as client:
        listed = await client.execute_command("CLIENT", "LIST")
    text = listed.decode() if isinstance(listed, bytes) else str(listed)
    return len(text.strip().splitlines()) - 1


async def test_a_full_cluster_primary_does_not_make_the_outbox_hoard_connections() -> None:
    """The outbox's slot primary refusing every write (out of memory, noeviction): each refused
    write, a readiness check or a callback the platform sends again, must not leave one more
    client with its open connection behind, for as long as the primary stays full."""
    cluster = ClusterSet()
    try:
        await cluster.start()
        target = RedisTarget(
            form="cluster",
            nodes=tuple(
                ("127.0.0.1", int(node.rpartition(":")[2])) for node in cluster.startup_nodes
            ),
            timeout_s=1,
        )
        outbox = RedisOutbox(target)
        try:
            await outbox.check_writable()
            primary = await cluster.primary_port_for(f"{outbox_prefix(target)}seq")
            async with Redis(port=primary) as admin:
                await admin.config_set("maxmemory-policy", "noeviction")
                await admin.config_set("maxmemory", "1")
            before = await connections_to(primary)
            for _ in range(REFUSED_WRITES):
                with pytest.raises(OutboxNotWritable):
                    await outbox.check_writable()
            grown = await connections_to(primary) - before
            assert grown <= 2, f"{grown} more connections after {REFUSED_WRITES} refused writes"
        finally:
            await outbox.close()
    finally:
        await cluster.stop()


@pytest.mark.parametrize(
    ("node", "valid"),
    [
        pytest.param("user:secret@r0:6379", False, id="a password in a node is refused"),
        pytest.param("user@r0:6379", False, id="a user in a node is refused"),
        pytest.param("r0?db=1:6379", False, id="a query in a node is refused"),
        pytest.param("r0#x:6379", False, id="a fragment in a node is refused"),
        pytest.param("r0:6379/", False, id="a path in a node is refused"),
        pytest.param("r0:0", False, id="port 0 is refused"),
        pytest.param("r0:65536", False, id="a port past 65535 is refused"),
        pytest.param("r0:99999", False, id="five digits past 65535 are refused"),
        pytest.param("[zz::1]:6379", False, id="an IPv6 address of no hex is refused"),
        pytest.param("r0:65535", True, id="port 65535 is a port"),
        pytest.param("[fd00::1]:26379", True, id="an IPv6 address is a host"),
        pytest.param("redis-0.redis.svc:6379", True, id="a DNS name is a host"),
    ],
)
async def test_check_config_and_the_json_schema_agree_on_a_hostile_node(
    node: str, valid: bool
) -> None:
    """A node the loader reads differently from what the file says (a password dropped, a
    host cut at `?`) must be refused by both, not started with."""
    text = BASE + f"cache: {{backend: redis, cluster: {{nodes: ['{node}']}}}}\n"
    assert (loader_accepts(text), schema_accepts(text)) == (valid, valid)


class AwayStore:
    """A shared store that never answers, as Redis in an outage (refused at once, so that
    thousands of logins take no time; a refused connection to redis-py costs its retries)."""

    shared = True

    async def get(self, key: str) -> bytes | None:
        raise StoreError("ConnectionError")

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        raise StoreError("ConnectionError")

    async def delete(self, *keys: str) -> None:
        raise StoreError("ConnectionError")

    async def lock(self, key: str, ttl_s: float) -> bool:
        raise StoreError("ConnectionError")

    async def count(self, prefix: str) -> int:
        raise StoreError("ConnectionError")

    async def ping(self) -> None:
        raise StoreError("ConnectionError")

    async def unlock(self, key: str) -> None:
        raise StoreError("ConnectionError")

    async def close(self) -> None:
        return None


def login_answer(open_id: str, padding: int) -> CachedAnswer:
    access_token = jwt.encode({"openId": open_id, "exp": time.time() + 3600}, b"platform-key")
    body = {
        "responseHeader": {"status": 200, "msg": "OK"},
        "response": {"accessToken": access_token, "expire": 3600, "pad": "x" * padding},
    }
    return CachedAnswer(200, "application/json", json.dumps(body).encode())


async def test_a_login_flood_while_redis_is_away_keeps_bounded_memory() -> None:
    """Every exchange while Redis cannot store its answer is kept in this process (so the same
    code sent again is not exchanged twice): a flood of distinct codes must not grow it past
    its bound of answers."""
    store = AwayStore()
    cache = TokenCache(store, MutableClock(), margin_s=60, wait_s=1)
    answer_bytes = 8_000

    async def flood(count: int, start: int) -> None:
        for n in range(start, start + count):
            answer = login_answer(f"user-{n}", answer_bytes)

            async def fetch(answer: CachedAnswer = answer) -> CachedAnswer:
                return answer

            _, source = await cache.exchange("demo", f"code-{n}", "user.info", fetch)
            assert source == "miss"

    tracemalloc.start()
    try:
        await flood(RECENT_MAX, 0)
        filled = tracemalloc.get_traced_memory()[0]
        await flood(2 * RECENT_MAX, RECENT_MAX)
        grown_mb = (tracemalloc.get_traced_memory()[0] - filled) / 2**20
    finally:
        tracemalloc.stop()
        await store.close()
    # Unbounded, 2000 more answers of 8 kB would be 16 MB more.
    assert grown_mb < 2, f"{grown_mb:.1f} MB more after {2 * RECENT_MAX} more logins"
