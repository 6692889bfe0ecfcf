"""The outbox in the Redis the token cache uses, shared by every replica.

Pending deliveries never expire; delivered ones are kept for RETAIN_S, dead ones until
replayed or for DEAD_RETAIN_S. Redis refuses a write it cannot keep (out of memory,
persistence failing, a read-only replica), so a write is the test of whether it can take one.

Every write that a failover must not lose (a delivery added, leased, ended or replayed) is one
Lua script followed by WAIT on the same connection (gateway.shared.replication): an accepted
callback is answered 200 only once the replicas have it. So the outbox talks to one primary
(gateway.shared.redis_clients.PrimaryLink): on a Cluster, its keys share the hash tag
{outbox}, one slot, whose primary the link follows through a failover.

redis-py is imported only when a Redis outbox is made: it costs a gateway about 10 MB of
memory, and no RedisError can be raised before it is imported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from gateway.callbacks.outbox.base import (
    DEAD,
    PENDING,
    Delivery,
    OutboxNotWritable,
    translating,
)
from gateway.config.model import RedisTarget
from gateway.shared.redis_clients import PrimaryLink
from gateway.shared.replication import NotAcknowledged, ReplicaWait


def _store_errors() -> tuple[type[Exception], ...]:
    from redis.exceptions import RedisClusterException, RedisError

    # RedisClusterException is no RedisError: a Cluster none of whose nodes could be reached.
    return (RedisError, RedisClusterException, OSError, NotAcknowledged)


translated = translating(_store_errors)


def _bytes(value: bytes | str) -> bytes:
    """A field as redis-py gives it without decode_responses: bytes (str only in its types)."""
    return value if isinstance(value, bytes) else value.encode()


def outbox_prefix(target: RedisTarget) -> str:
    """Where the outbox's keys live: on a Cluster, all in one slot (the hash tag); elsewhere
    under the names earlier versions used, so an upgrade finds its pending deliveries."""
    return target.prefix + ("{outbox}:" if target.form == "cluster" else "outbox:")


class RedisOutbox:
    """Deliveries as hashes, with sorted sets of the due (by next attempt) and the dead."""

    RETAIN_S = 7 * 24 * 3600
    DEAD_RETAIN_S = 30 * 24 * 3600
    # A failover's worst time: a Cluster's default cluster-node-timeout is 15 s, the election
    # after it a few more.
    lease_margin_s = 60.0
    # KEYS: the idempotency key, the id sequence, the due set. Already there: written again
    # unchanged, so that the WAIT after it covers the first write too (replication is one
    # ordered stream), and a platform retrying a callback refused 503 is answered 200 only
    # once the replicas have it.
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
    redis.call('SET', KEYS[1], redis.call('GET', KEYS[1]))
    return 0
    """
    # KEYS: the idempotency key. Written again unchanged when there, for the WAIT after it
    # (see _ADD).
    _HOLDS = """
    local id = redis.call('GET', KEYS[1])
    if not id then return 0 end
    redis.call('SET', KEYS[1], id)
    return 1
    """
    # KEYS: the due set. Leased: moved ahead by the lease, so that replicas split the due.
    _LEASE = """
    local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
    for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], id) end
    return ids
    """
    # KEYS: the delivery, the due set. ARGV: its id, how long it is kept.
    _DELIVERED = """
    redis.call('HSET', KEYS[1], 'state', 'delivered', 'last_error', '')
    redis.call('HINCRBY', KEYS[1], 'attempts', 1)
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('EXPIRE', KEYS[1], ARGV[2])
    """
    # KEYS: the delivery, the due set, the dead set. ARGV: its id, the error, the next
    # attempt's time, 1 if dead, how long a dead one is kept.
    _FAILED = """
    redis.call('HINCRBY', KEYS[1], 'attempts', 1)
    if ARGV[4] == '1' then
      redis.call('HSET', KEYS[1], 'state', 'dead', 'last_error', ARGV[2], 'next_at', ARGV[3])
      redis.call('ZREM', KEYS[2], ARGV[1])
      redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
      redis.call('EXPIRE', KEYS[1], ARGV[5])
    else
      redis.call('HSET', KEYS[1], 'state', 'pending', 'last_error', ARGV[2], 'next_at', ARGV[3])
      redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
    end
    """
    # KEYS: the delivery, the due set, the dead set. ARGV: its id, now.
    _REPLAY = """
    if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
    redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', 0, 'next_at', ARGV[2],
      'last_error', '')
    redis.call('PERSIST', KEYS[1])
    redis.call('ZREM', KEYS[3], ARGV[1])
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
    return 1
    """

    def __init__(self, target: RedisTarget) -> None:
        self._p = outbox_prefix(target)
        self._due, self._dead = f"{self._p}due", f"{self._p}dead"
        self._changes_channel = f"{self._p}changes"
        self._link = PrimaryLink(target, f"{self._p}seq")
        self._replicas = ReplicaWait(target.wait_replicas, target.wait_timeout_s)

    def _d(self, delivery_id: int | str) -> str:
        return f"{self._p}d:{delivery_id}"

    async def _script(self, script: str, keys: list[str], *args: str | float | bytes) -> object:
        """Runs a script that writes, and waits until the replicas have what it wrote."""
        async with self._link.use() as redis:
            results = await self._replicas.write(
                redis, lambda pipe: pipe.eval(script, len(keys), *keys, *args)
            )
        return results[0]

    @translated
    async def add(self, app: str, trade_no: str, status: int, payload: bytes, now: float) -> bool:
        keys = [f"{self._p}key:{trade_no}:{status}", f"{self._p}seq", self._due]
        added = await self._script(
            self._ADD, keys, f"{self._p}d:", app, trade_no, status, payload, now
        )
        return int(str(added)) > 0

    @translated
    async def holds(self, trade_no: str, status: int) -> bool:
        """Whether the outbox has this callback, as the replicas have it too: a retry of one
        refused 503 for want of them is answered 200 only once they do."""
        held = await self._script(self._HOLDS, [f"{self._p}key:{trade_no}:{status}"])
        return bool(int(str(held)))

    async def _load(self, ids: Iterable[bytes | str | int]) -> list[Delivery]:
        deliveries = []
        async with self._link.use() as redis:
            for raw_id in ids:
                row = await redis.hgetall(self._d(int(raw_id)))
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

    @translated
    async def due(self, now: float, limit: int, lease_s: float) -> list[Delivery]:
        """Due deliveries, leased (moved ahead by `lease_s`) in one step so replicas split
        them; a lease the replicas do not have is not counted on (another replica could
        take the same delivery after a failover), so nothing is delivered on it."""
        ids = await self._script(self._LEASE, [self._due], now, limit, now + lease_s)
        if not isinstance(ids, list):
            return []
        return await self._load(ids)

    @translated
    async def next_due_at(self) -> float | None:
        async with self._link.use() as redis:
            first = await redis.zrange(self._due, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    @translated
    async def delivered(self, delivery_id: int) -> None:
        keys = [self._d(delivery_id), self._due]
        await self._script(self._DELIVERED, keys, delivery_id, self.RETAIN_S)

    @translated
    async def failed(self, delivery_id: int, error: str, next_at: float, dead: bool) -> None:
        keys = [self._d(delivery_id), self._due, self._dead]
        await self._script(
            self._FAILED, keys, delivery_id, error, next_at, int(dead), self.DEAD_RETAIN_S
        )

    @translated
    async def listing(self, states: tuple[str, ...]) -> list[Delivery]:
        ids: list[bytes | str] = []
        if PENDING in states:
            ids += await self._members(self._due)
        if DEAD in states:
            ids += await self._members(self._dead)
        return sorted(await self._load(ids), key=lambda d: d.id)

    async def _members(self, key: str) -> list[bytes | str]:
        """A sorted set's members (zrange's types also cover its answers with scores)."""
        async with self._link.use() as redis:
            members = await redis.zrange(key, 0, -1)
        return [member for member in members if isinstance(member, bytes | str)]

    @translated
    async def counts(self) -> dict[str, int]:
        async with self._link.use() as redis:
            return {
                PENDING: int(await redis.zcard(self._due)),
                DEAD: int(await redis.zcard(self._dead)),
            }

    @translated
    async def check_writable(self) -> None:
        """A write, short-lived, waited for as a callback's is: Redis refuses one it cannot
        keep (over maxmemory, its persistence failing with stop-writes-on-bgsave-error, a
        read-only replica), and the replicas may not be keeping up."""
        from redis.exceptions import ResponseError

        try:
            async with self._link.use() as redis:
                await self._replicas.write(
                    redis, lambda pipe: pipe.set(f"{self._p}write_check", b"1", px=60_000)
                )
        except ResponseError as exc:
            raise OutboxNotWritable(
                f"Redis refuses writes to the outbox ({type(exc).__name__})"
            ) from None
        except NotAcknowledged as exc:
            raise OutboxNotWritable(f"the outbox's replicas lag: {exc}") from None

    @translated
    async def replay(self, delivery_id: int, now: float) -> bool:
        keys = [self._d(delivery_id), self._due, self._dead]
        replayed = await self._script(self._REPLAY, keys, delivery_id, now)
        if not int(str(replayed)):
            return False
        async with self._link.use() as redis:
            await redis.publish(self._changes_channel, b"replay")
        return True

    async def changes(self) -> AsyncIterator[None]:
        async with self._link.use() as redis:
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(self._changes_channel)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        yield
            finally:
                await pubsub.aclose()

    @translated
    async def sign_seen(self, sign: str, now: float) -> bool:
        async with self._link.use() as redis:
            return bool(await redis.exists(f"{self._p}sign:{sign}"))

    @translated
    async def remember_sign(self, sign: str, now: float, ttl_s: float) -> None:
        async with self._link.use() as redis:
            await redis.set(f"{self._p}sign:{sign}", b"1", px=int(ttl_s * 1000))

    @translated
    async def close(self) -> None:
        await self._link.close()
