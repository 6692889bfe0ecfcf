"""The outbox in the Redis the token cache uses, shared by every replica.

Pending deliveries never expire; delivered ones are kept for RETAIN_S, dead ones until
replayed or for DEAD_RETAIN_S. How durable a write is depends on the Redis server's own
persistence (use appendonly yes). Redis refuses a write it cannot keep (out of memory,
persistence failing, a read-only replica), so a write is the test of whether it can take one.

redis-py is imported only when a Redis outbox is made: it costs a gateway about 10 MB of
memory, and no RedisError can be raised before it is imported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

from gateway.callbacks.outbox.base import (
    DEAD,
    DELIVERED,
    PENDING,
    Delivery,
    OutboxNotWritable,
    translating,
)


def _store_errors() -> tuple[type[Exception], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


translated = translating(_store_errors)


def _bytes(value: bytes | str) -> bytes:
    """A field as redis-py gives it without decode_responses: bytes (str only in its types)."""
    return value if isinstance(value, bytes) else value.encode()


class RedisOutbox:
    """Deliveries as hashes, with sorted sets of the due (by next attempt) and the dead."""

    RETAIN_S = 7 * 24 * 3600
    DEAD_RETAIN_S = 30 * 24 * 3600
    _ADD = """
    if redis.call('SET', KEYS[1], '0', 'NX') then
      local id = redis.call('INCR', KEYS[2])
      redis.call('HSET', ARGV[1] .. id, 'app', ARGV[2], 'trade_no', ARGV[3], 'status', ARGV[4],
        'payload', ARGV[5], 'state', 'pending', 'attempts', 0, 'next_at', ARGV[6],
        'last_error', '', 'created_at', ARGV[6])
      redis.call('ZADD', KEYS[3], ARGV[6], id)
      redis.call('SET', KEYS[1], id)
      return id
    end
    return 0
    """

    def __init__(self, url: str, prefix: str, timeout_s: float) -> None:
        import redis.asyncio as aioredis

        self._p = prefix + "outbox:"
        self._changes_channel = f"{self._p}changes"
        self._redis: Redis = aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def _d(self, delivery_id: int | str) -> str:
        return f"{self._p}d:{delivery_id}"

    @translated
    async def add(self, app: str, trade_no: str, status: int, payload: bytes, now: float) -> bool:
        keys = [f"{self._p}key:{trade_no}:{status}", f"{self._p}seq", f"{self._p}due"]
        added = await self._redis.eval(
            self._ADD, len(keys), *keys, f"{self._p}d:", app, trade_no, status, payload, now
        )
        return int(added) > 0

    @translated
    async def holds(self, trade_no: str, status: int) -> bool:
        return bool(await self._redis.exists(f"{self._p}key:{trade_no}:{status}"))

    async def _load(self, ids: Iterable[bytes | str | int]) -> list[Delivery]:
        deliveries = []
        for raw_id in ids:
            row = await self._redis.hgetall(self._d(int(raw_id)))
            if row:
                value = {_bytes(k).decode(): _bytes(v) for k, v in row.items()}
                deliveries.append(
                    Delivery(
                        int(raw_id),
                        value["app"].decode(),
                        value["trade_no"].decode(),
                        int(value["status"]),
                        value["payload"],
                        value["state"].decode(),
                        int(value["attempts"]),
                        float(value["next_at"]),
                        value["last_error"].decode(),
                        float(value["created_at"]),
                    )
                )
        return deliveries

    _LEASE = """
    local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
    for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], id) end
    return ids
    """

    @translated
    async def due(self, now: float, limit: int, lease_s: float) -> list[Delivery]:
        """Due deliveries, leased (moved ahead by `lease_s`) in one step so replicas split them."""
        ids = await self._redis.eval(self._LEASE, 1, f"{self._p}due", now, limit, now + lease_s)
        return await self._load(ids)

    @translated
    async def next_due_at(self) -> float | None:
        first = await self._redis.zrange(f"{self._p}due", 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    @translated
    async def delivered(self, delivery_id: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._d(delivery_id), mapping={"state": DELIVERED, "last_error": ""})
            pipe.hincrby(self._d(delivery_id), "attempts", 1)
            pipe.zrem(f"{self._p}due", delivery_id)
            pipe.expire(self._d(delivery_id), self.RETAIN_S)
            await pipe.execute()

    @translated
    async def failed(self, delivery_id: int, error: str, next_at: float, dead: bool) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            state = DEAD if dead else PENDING
            pipe.hset(
                self._d(delivery_id),
                mapping={"state": state, "last_error": error, "next_at": next_at},
            )
            pipe.hincrby(self._d(delivery_id), "attempts", 1)
            if dead:
                pipe.zrem(f"{self._p}due", delivery_id)
                pipe.zadd(f"{self._p}dead", {str(delivery_id): next_at})
                pipe.expire(self._d(delivery_id), self.DEAD_RETAIN_S)
            else:
                pipe.zadd(f"{self._p}due", {str(delivery_id): next_at})
            await pipe.execute()

    @translated
    async def listing(self, states: tuple[str, ...]) -> list[Delivery]:
        ids: list[bytes | str] = []
        if PENDING in states:
            ids += await self._members(f"{self._p}due")
        if DEAD in states:
            ids += await self._members(f"{self._p}dead")
        return sorted(await self._load(ids), key=lambda d: d.id)

    async def _members(self, key: str) -> list[bytes | str]:
        """A sorted set's members (zrange's types also cover its answers with scores)."""
        members = await self._redis.zrange(key, 0, -1)
        return [member for member in members if isinstance(member, bytes | str)]

    @translated
    async def counts(self) -> dict[str, int]:
        return {
            PENDING: int(await self._redis.zcard(f"{self._p}due")),
            DEAD: int(await self._redis.zcard(f"{self._p}dead")),
        }

    @translated
    async def check_writable(self) -> None:
        """A write, short-lived: Redis refuses one it cannot keep (over maxmemory, its
        persistence failing with stop-writes-on-bgsave-error, a read-only replica)."""
        from redis.exceptions import ResponseError

        try:
            await self._redis.set(f"{self._p}write_check", b"1", px=60_000)
        except ResponseError as exc:
            raise OutboxNotWritable(
                f"Redis refuses writes to the outbox ({type(exc).__name__})"
            ) from None

    @translated
    async def replay(self, delivery_id: int, now: float) -> bool:
        if not await self._redis.exists(self._d(delivery_id)):
            return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._d(delivery_id),
                mapping={"state": PENDING, "attempts": 0, "next_at": now, "last_error": ""},
            )
            pipe.persist(self._d(delivery_id))
            pipe.zrem(f"{self._p}dead", delivery_id)
            pipe.zadd(f"{self._p}due", {str(delivery_id): now})
            pipe.publish(self._changes_channel, b"replay")
            await pipe.execute()
        return True

    async def changes(self) -> AsyncIterator[None]:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._changes_channel)
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield
        finally:
            await pubsub.aclose()

    @translated
    async def sign_seen(self, sign: str, now: float) -> bool:
        return bool(await self._redis.exists(f"{self._p}sign:{sign}"))

    @translated
    async def remember_sign(self, sign: str, now: float, ttl_s: float) -> None:
        await self._redis.set(f"{self._p}sign:{sign}", b"1", px=int(ttl_s * 1000))

    @translated
    async def close(self) -> None:
        await self._redis.aclose()
