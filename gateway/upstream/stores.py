"""Where the token cache keeps its entries: process memory, or Redis shared by replicas."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from cachetools import TLRUCache

from gateway.config.model import RedisTarget
from gateway.core.clock import Clock
from gateway.shared.redis_clients import (
    ClusterPrimaries,
    close_client,
    open_cluster,
    open_primary,
)
from gateway.shared.replication import NotAcknowledged, ReplicaWait
from gateway.upstream.tokens import StoreError

if TYPE_CHECKING:
    # Imported for their types only: see RedisStore.__init__.
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.lock import Lock

T = TypeVar("T")

# Measured with bench/run.py (token_cache_bytes_per_entry): one cached login, three entries.
ENTRIES_PER_TOKEN = 3


class MemoryStore:
    """A bounded LRU in this process; entries vanish at their TTL or when space runs out."""

    shared = False

    def __init__(self, max_tokens: int, clock: Clock) -> None:
        self._entries: TLRUCache[str, tuple[bytes, float]] = TLRUCache(
            maxsize=max_tokens * ENTRIES_PER_TOKEN,
            ttu=lambda _key, value, _now: value[1],
            timer=lambda: clock.now_ms() / 1000,
        )
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        return entry[0] if entry is not None else None

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries[key] = (value, self._clock.now_ms() / 1000 + ttl_s)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def count(self, prefix: str) -> int:
        now = self._clock.now_ms() / 1000
        return sum(
            1
            for key, (_, expires) in list(self._entries.items())
            if key.startswith(prefix) and expires > now
        )

    async def ping(self) -> None:
        return None

    async def lock(self, key: str, ttl_s: float) -> bool:
        return True

    async def unlock(self, key: str) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()


class RedisStore:
    """Redis, one server, behind Sentinel or a Cluster: every key under the prefix, every key
    with a TTL. An exchange's answer waits for the replicas (cache.wait_replicas), so a
    failover right after it does not make the next call exchange the code again."""

    shared = True

    def __init__(self, target: RedisTarget) -> None:
        self._prefix = target.prefix
        self._held: dict[str, Lock] = {}
        self._redis: Redis | RedisCluster
        # Where a write is made and WAITed for: the one master, or on a Cluster the primary
        # of its key (WAIT through the cluster client would go to every node, not to the
        # connection that wrote).
        self._primary: Redis | None = None
        self._primaries: ClusterPrimaries | None = None
        if target.form == "cluster":
            self._redis = cluster = open_cluster(target)
            self._primaries = ClusterPrimaries(cluster, target)
        else:
            self._redis = self._primary = open_primary(target)
        self._replicas = ReplicaWait(target.wait_replicas, target.wait_timeout_s)

    async def get(self, key: str) -> bytes | None:
        value = await self._run(self._redis.get(self._prefix + key))
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        ttl_ms = max(1, int(ttl_s * 1000))
        name = self._prefix + key

        def queue(pipe: Pipeline) -> object:
            return pipe.set(name, value, px=ttl_ms)

        if not self._replicas.wanted:
            await self._run(self._redis.set(name, value, px=ttl_ms))
        elif self._primaries is not None:
            await self._run(self._primaries.write(name, queue))
        elif self._primary is not None:
            await self._run(self._replicas.write(self._primary, queue))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._run(self._redis.delete(*(self._prefix + key for key in keys)))

    async def count(self, prefix: str) -> int:
        """Keys under `prefix`, counted with SCAN (never KEYS, which would stall Redis)."""

        async def scan() -> int:
            found = 0
            async for _ in self._redis.scan_iter(match=f"{self._prefix}{prefix}*", count=1000):
                found += 1
            return found

        counted: int = await self._run(scan())
        return counted

    async def ping(self) -> None:
        await self._run(self._redis.ping())

    async def lock(self, key: str, ttl_s: float) -> bool:
        # redis-py's Lock: SET NX PX with a token of its own, so one replica gets it, it
        # expires by itself if that replica dies, and only its holder can release it.
        lock = self._redis.lock(self._prefix + key, timeout=ttl_s, blocking=False)
        acquired = bool(await self._run(lock.acquire()))
        if acquired:
            self._held[key] = lock
        return acquired

    async def unlock(self, key: str) -> None:
        lock = self._held.pop(key, None)
        if lock is None:
            return
        try:
            await self._run(lock.release())
        except StoreError as exc:
            from redis.exceptions import LockError

            if not isinstance(exc.__cause__, LockError):
                raise
            # Expired, or taken over since: it is no longer this replica's to release.

    async def close(self) -> None:
        if self._primaries is not None:
            await self._primaries.close()
        await close_client(self._redis)

    async def _run(self, operation: Awaitable[T]) -> T:
        from redis.exceptions import RedisClusterException, RedisError

        try:
            return await operation
        except (
            RedisError,
            # Not a RedisError: a Cluster none of whose nodes could be reached (down, refused
            # TLS, wrong password) when the client first asks where the slots are.
            RedisClusterException,
            NotAcknowledged,
            OSError,
            TimeoutError,
            TypeError,
            ValueError,
        ) as exc:
            # TypeError and ValueError: redis-py's answer to a URL option it cannot use.
            # The message names the kind of failure only: a URL could carry a password.
            raise StoreError(type(exc).__name__) from exc
