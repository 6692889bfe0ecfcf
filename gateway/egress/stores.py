"""Where the token cache keeps its entries: process memory, or Redis shared by replicas."""

from __future__ import annotations

import secrets
from typing import Any

import redis.asyncio as aioredis
from cachetools import TLRUCache
from redis.exceptions import RedisError

from gateway.core.clock import Clock
from gateway.egress.tokens import StoreError

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

    async def lock(self, key: str, ttl_s: float) -> bool:
        return True

    async def unlock(self, key: str) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()


class RedisStore:
    """Redis (or Redis over TLS): every key under the prefix, every key with a TTL."""

    shared = True

    def __init__(self, url: str, prefix: str, timeout_s: float) -> None:
        self._prefix = prefix
        self._held: dict[str, bytes] = {}
        self._redis: Any = aioredis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
        )

    async def get(self, key: str) -> bytes | None:
        value = await self._run(self._redis.get(self._prefix + key))
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._run(self._redis.set(self._prefix + key, value, px=max(1, int(ttl_s * 1000))))

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._run(self._redis.delete(*(self._prefix + key for key in keys)))

    # Deletes the lock only if it still holds this holder's token, never another's.
    _UNLOCK = """
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """

    async def lock(self, key: str, ttl_s: float) -> bool:
        # SET NX PX: one replica gets it; it expires by itself if that replica dies.
        holder = secrets.token_hex(16).encode()
        acquired = await self._run(
            self._redis.set(self._prefix + key, holder, nx=True, px=int(ttl_s * 1000))
        )
        if acquired:
            self._held[key] = holder
        return bool(acquired)

    async def unlock(self, key: str) -> None:
        holder = self._held.pop(key, None)
        if holder is not None:
            await self._run(self._redis.eval(self._UNLOCK, 1, self._prefix + key, holder))

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(self, operation: Any) -> Any:
        try:
            return await operation
        except (RedisError, OSError, TimeoutError, TypeError, ValueError) as exc:
            # TypeError and ValueError: redis-py's answer to a URL option it cannot use.
            # The message names the kind of failure only: a URL could carry a password.
            raise StoreError(type(exc).__name__) from exc
