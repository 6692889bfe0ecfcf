"""The durable outbox of verified payment callbacks, and the record of signs already seen.

Each (tradeNo, transactionStatus) is one row, so a callback the platform repeats adds nothing.
A row is written, and synced to disk, before the platform gets its 200; a delivery worker
works through the pending rows and survives restarts because the rows do.

SQLite (stdlib) by default. Its calls block, so they run in a worker thread; one connection,
one lock.

Whether the outbox can take a write (for /readyz) is not asked of a test write: SQLite
commits into the blocks its WAL file already has once it has been checkpointed, which it does
by itself, and was seen to commit rows on a filesystem with no byte free. So the SQLite
outbox looks at the free space of its filesystem (and whether it is read-only), and at how its
last real write went; Redis refuses a write it cannot keep (out of memory, persistence
failing, a read-only replica), so there a write is the test.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

from gateway.core.clock import Clock, SystemClock
from gateway.http.admin import Unusable

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
# How often a SQLite outbox looks whether another process changed it (a cheap counter read).
SQLITE_CHANGE_CHECK_S = 0.5
# Below this much free space on its filesystem a SQLite outbox is reported unable to write:
# several thousand callbacks, and room for SQLite's own WAL and checkpoints.
MIN_FREE_BYTES = 4 << 20
P = ParamSpec("P")
R = TypeVar("R")


class OutboxError(Exception):
    """The outbox's store (SQLite, Redis) failed; callers never see that store's own errors."""


class OutboxNotWritable(OutboxError, Unusable):
    """The outbox cannot take a write now; the message says why."""


_STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)


def _redis_errors() -> tuple[type[Exception], ...]:
    # redis-py is imported only by the Redis outbox (it costs about 10 MB of memory): no
    # RedisError can be raised before that.
    errors = sys.modules.get("redis.exceptions")
    return () if errors is None else (errors.RedisError,)


def _translated(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """The store's exceptions, as OutboxError."""

    @functools.wraps(method)
    async def translating(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except _STORE_ERRORS + _redis_errors() as exc:
            raise OutboxError(f"{type(exc).__name__}: {exc}") from exc

    return translating


@dataclass(frozen=True)
class Delivery:
    id: int
    app: str
    trade_no: str
    status: int
    payload: bytes
    state: str
    attempts: int
    next_at: float
    last_error: str
    created_at: float

    @property
    def idempotency_key(self) -> str:
        return f"{self.trade_no}:{self.status}"


class Outbox(Protocol):
    async def add(
        self, app: str, trade_no: str, status: int, payload: bytes, now: float
    ) -> bool: ...
    async def holds(self, trade_no: str, status: int) -> bool: ...
    async def due(self, now: float, limit: int, lease_s: float) -> list[Delivery]: ...
    async def next_due_at(self) -> float | None: ...
    async def delivered(self, delivery_id: int) -> None: ...
    async def failed(self, delivery_id: int, error: str, next_at: float, dead: bool) -> None: ...
    async def listing(self, states: tuple[str, ...]) -> list[Delivery]: ...
    async def replay(self, delivery_id: int, now: float) -> bool: ...
    async def counts(self) -> dict[str, int]:
        """How many deliveries are pending and dead."""
        ...

    async def check_writable(self) -> None:
        """Raises OutboxError (OutboxNotWritable, saying why) unless a write would be kept."""
        ...

    def changes(self) -> AsyncIterator[None]:
        """Yields whenever another process (`neu-gateway callbacks replay`) changed the
        outbox, so a worker can look at once instead of at its next check."""
        ...

    async def sign_seen(self, sign: str, now: float) -> bool: ...
    async def remember_sign(self, sign: str, now: float, ttl_s: float) -> None: ...
    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    trade_no TEXT NOT NULL,
    status INTEGER NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    UNIQUE (trade_no, status)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_at);
CREATE TABLE IF NOT EXISTS seen_signs (sign TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS write_checks (id INTEGER PRIMARY KEY);
"""
_COLUMNS = "id, app, trade_no, status, payload, state, attempts, next_at, last_error, created_at"


def sqlite_path(store: str) -> Path:
    """`sqlite:///var/lib/x.db` is the absolute path /var/lib/x.db."""
    return Path(store.removeprefix("sqlite://"))


def _failure(exc: Exception) -> str:
    """What kind of failure a store error is (SQLITE_FULL, ENOSPC), without its text."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorname", None):
        return str(exc.sqlite_errorname)
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    return type(exc).__name__


def _size(count: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


class SqliteOutbox:
    def __init__(
        self, path: Path, clock: Clock | None = None, min_free_bytes: int = MIN_FREE_BYTES
    ) -> None:
        self._clock = clock or SystemClock()
        self._path = path
        self._min_free_bytes = min_free_bytes
        # How the last write that changed something failed; None once one has gone through.
        self._write_failure: str | None = None
        try:
            self._open(path)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"{type(exc).__name__}: {exc}") from exc

    def _open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            # WAL with synchronous=FULL: a committed row survives a crash or power loss.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    async def _run(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            with self._lock:
                return self._db.execute(sql, args).fetchall()

        return await asyncio.to_thread(run)

    async def _change(self, sql: str, *args: Any) -> int:
        def run() -> int:
            with self._lock:
                return self._written(lambda: self._db.execute(sql, args).rowcount)

        return await asyncio.to_thread(run)

    def _written(self, write: Callable[[], R]) -> R:
        """Runs a write (under the lock), remembering whether it went through. One that
        changed nothing (an INSERT OR IGNORE ignored) wrote nothing, so proves nothing."""
        try:
            result = write()
        except _STORE_ERRORS as exc:
            self._write_failure = _failure(exc)
            raise
        if result:
            self._write_failure = None
        return result

    @_translated
    async def add(self, app: str, trade_no: str, status: int, payload: bytes, now: float) -> bool:
        added = await self._change(
            "INSERT OR IGNORE INTO deliveries (app, trade_no, status, payload, state, next_at,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            app,
            trade_no,
            status,
            payload,
            PENDING,
            now,
            now,
        )
        return added == 1

    @_translated
    async def holds(self, trade_no: str, status: int) -> bool:
        """Whether this (tradeNo, status) was accepted before, whatever became of it."""
        rows = await self._run(
            "SELECT 1 FROM deliveries WHERE trade_no = ? AND status = ?", trade_no, status
        )
        return bool(rows)

    @_translated
    async def due(self, now: float, limit: int, lease_s: float) -> list[Delivery]:
        """Pending deliveries whose time has come, leased for `lease_s` to this caller.

        The lease (next_at moved ahead) is what keeps two workers on one outbox from sending
        the same delivery; it runs out by itself if this one dies mid-delivery.
        """

        def lease() -> list[tuple[Any, ...]]:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM deliveries WHERE state = ? AND next_at <= ?"  # noqa: S608 - constant columns
                    " ORDER BY next_at LIMIT ?",
                    (PENDING, now, limit),
                ).fetchall()
                self._db.executemany(
                    "UPDATE deliveries SET next_at = ? WHERE id = ?",
                    [(now + lease_s, row[0]) for row in rows],
                )
            finally:
                self._db.execute("COMMIT")
            return rows

        def run() -> list[Delivery]:
            with self._lock:
                return [Delivery(*row) for row in self._written(lease)]

        return await asyncio.to_thread(run)

    @_translated
    async def next_due_at(self) -> float | None:
        rows = await self._run("SELECT MIN(next_at) FROM deliveries WHERE state = ?", PENDING)
        value = rows[0][0] if rows else None
        return float(value) if value is not None else None

    @_translated
    async def delivered(self, delivery_id: int) -> None:
        await self._change(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, last_error = ''"
            " WHERE id = ?",
            DELIVERED,
            delivery_id,
        )

    @_translated
    async def failed(self, delivery_id: int, error: str, next_at: float, dead: bool) -> None:
        await self._change(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, last_error = ?,"
            " next_at = ? WHERE id = ?",
            DEAD if dead else PENDING,
            error,
            next_at,
            delivery_id,
        )

    @_translated
    async def listing(self, states: tuple[str, ...]) -> list[Delivery]:
        marks = ", ".join("?" for _ in states)
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM deliveries WHERE state IN ({marks}) ORDER BY id",  # noqa: S608 - only ? marks
            *states,
        )
        return [Delivery(*row) for row in rows]

    @_translated
    async def counts(self) -> dict[str, int]:
        rows = await self._run(
            "SELECT state, COUNT(*) FROM deliveries WHERE state IN (?, ?) GROUP BY state",
            PENDING,
            DEAD,
        )
        return {PENDING: 0, DEAD: 0, **{state: count for state, count in rows}}

    @_translated
    async def check_writable(self) -> None:
        """The database answers, its filesystem is writable with min_free_bytes free, and its
        last write went through; after a failed one, a write is made now to see whether
        writes go through again (so the outbox is ready again without waiting for traffic)."""

        def check() -> None:
            with self._lock:
                self._db.execute("SELECT 1").fetchall()
            stat = os.statvfs(self._path.parent)
            if stat.f_flag & os.ST_RDONLY:
                raise OutboxNotWritable("the filesystem holding the outbox is read-only")
            # f_bavail, not f_bfree: the blocks reserved for root are not the outbox's to count.
            free = stat.f_bavail * stat.f_frsize
            if free < self._min_free_bytes:
                raise OutboxNotWritable(
                    f"the filesystem holding the outbox has {_size(free)} free, less than the "
                    f"{_size(self._min_free_bytes)} kept for it"
                )
            if self._write_failure is None:
                return
            try:
                with self._lock:
                    self._written(
                        lambda: (
                            self._db.execute(
                                "INSERT OR REPLACE INTO write_checks (id) VALUES (1)"
                            ).rowcount
                        )
                    )
            except _STORE_ERRORS:
                raise OutboxNotWritable(
                    f"writes to the outbox fail ({self._write_failure})"
                ) from None

        await asyncio.to_thread(check)

    @_translated
    async def replay(self, delivery_id: int, now: float) -> bool:
        changed = await self._change(
            "UPDATE deliveries SET state = ?, attempts = 0, next_at = ?, last_error = ''"
            " WHERE id = ?",
            PENDING,
            now,
            delivery_id,
        )
        return changed == 1

    async def changes(self) -> AsyncIterator[None]:
        # SQLite's own signal: data_version moves when another connection commits.
        seen = await asyncio.to_thread(self._data_version)
        while True:
            await self._clock.sleep(SQLITE_CHANGE_CHECK_S)
            try:
                version = await asyncio.to_thread(self._data_version)
            except sqlite3.Error:
                continue
            if version != seen:
                seen = version
                yield

    def _data_version(self) -> int:
        with self._lock:
            row = self._db.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    @_translated
    async def sign_seen(self, sign: str, now: float) -> bool:
        """Whether a callback with this sign was accepted before, within the replay window."""
        rows = await self._run(
            "SELECT 1 FROM seen_signs WHERE sign = ? AND expires_at > ?", sign, now
        )
        return bool(rows)

    @_translated
    async def remember_sign(self, sign: str, now: float, ttl_s: float) -> None:
        def remember() -> int:
            self._db.execute("DELETE FROM seen_signs WHERE expires_at <= ?", (now,))
            return self._db.execute(
                "INSERT OR REPLACE INTO seen_signs (sign, expires_at) VALUES (?, ?)",
                (sign, now + ttl_s),
            ).rowcount

        def run() -> None:
            with self._lock:
                self._written(remember)

        await asyncio.to_thread(run)

    @_translated
    async def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisOutbox:
    """The outbox in the Redis the token cache uses, shared by every replica.

    Pending deliveries never expire; delivered ones are kept for RETAIN_S, dead ones until
    replayed or for DEAD_RETAIN_S. How durable a write is depends on the Redis server's own
    persistence (use appendonly yes).
    """

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
        self._redis: Any = aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def _d(self, delivery_id: int | str) -> str:
        return f"{self._p}d:{delivery_id}"

    @_translated
    async def add(self, app: str, trade_no: str, status: int, payload: bytes, now: float) -> bool:
        keys = [f"{self._p}key:{trade_no}:{status}", f"{self._p}seq", f"{self._p}due"]
        added = await self._redis.eval(
            self._ADD, len(keys), *keys, f"{self._p}d:", app, trade_no, status, payload, now
        )
        return int(added) > 0

    @_translated
    async def holds(self, trade_no: str, status: int) -> bool:
        return bool(await self._redis.exists(f"{self._p}key:{trade_no}:{status}"))

    async def _load(self, ids: list[Any]) -> list[Delivery]:
        deliveries = []
        for raw_id in ids:
            row = await self._redis.hgetall(self._d(int(raw_id)))
            if row:
                value = {k.decode(): v for k, v in row.items()}
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

    @_translated
    async def due(self, now: float, limit: int, lease_s: float) -> list[Delivery]:
        """Due deliveries, leased (moved ahead by `lease_s`) in one step so replicas split them."""
        ids = await self._redis.eval(self._LEASE, 1, f"{self._p}due", now, limit, now + lease_s)
        return await self._load(ids)

    @_translated
    async def next_due_at(self) -> float | None:
        first = await self._redis.zrange(f"{self._p}due", 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    @_translated
    async def delivered(self, delivery_id: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._d(delivery_id), mapping={"state": DELIVERED, "last_error": ""})
            pipe.hincrby(self._d(delivery_id), "attempts", 1)
            pipe.zrem(f"{self._p}due", delivery_id)
            pipe.expire(self._d(delivery_id), self.RETAIN_S)
            await pipe.execute()

    @_translated
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

    @_translated
    async def listing(self, states: tuple[str, ...]) -> list[Delivery]:
        ids: list[Any] = []
        if PENDING in states:
            ids += await self._redis.zrange(f"{self._p}due", 0, -1)
        if DEAD in states:
            ids += await self._redis.zrange(f"{self._p}dead", 0, -1)
        return sorted(await self._load(ids), key=lambda d: d.id)

    @_translated
    async def counts(self) -> dict[str, int]:
        return {
            PENDING: int(await self._redis.zcard(f"{self._p}due")),
            DEAD: int(await self._redis.zcard(f"{self._p}dead")),
        }

    @_translated
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

    @_translated
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

    @_translated
    async def sign_seen(self, sign: str, now: float) -> bool:
        return bool(await self._redis.exists(f"{self._p}sign:{sign}"))

    @_translated
    async def remember_sign(self, sign: str, now: float, ttl_s: float) -> None:
        await self._redis.set(f"{self._p}sign:{sign}", b"1", px=int(ttl_s * 1000))

    @_translated
    async def close(self) -> None:
        await self._redis.aclose()
