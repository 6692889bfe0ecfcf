"""The outbox in SQLite (stdlib), the default: one file, on the gateway's own disk.

Each (tradeNo, transactionStatus) is one row, so a callback the platform repeats adds nothing.
A row is written, and synced to disk, before the platform gets its 200; a delivery worker
works through the pending rows and survives restarts because the rows do. SQLite's calls
block, so they run in a worker thread; one connection, one lock.

Whether the outbox can take a write (for /readyz) is not asked of a test write: SQLite
commits into the blocks its WAL file already has once it has been checkpointed, which it does
by itself, and was seen to commit rows on a filesystem with no byte free. So this outbox
looks at the free space of its filesystem (and whether it is read-only), and at how its last
real write went.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.callbacks.outbox.base import (
    DEAD,
    DELIVERED,
    PENDING,
    Delivery,
    OutboxError,
    OutboxNotWritable,
    translating,
)
from gateway.core.clock import Clock, SystemClock

# How often a SQLite outbox looks whether another process changed it (a cheap counter read).
SQLITE_CHANGE_CHECK_S = 0.5
# Below this much free space on its filesystem a SQLite outbox is reported unable to write:
# several thousand callbacks, and room for SQLite's own WAL and checkpoints.
MIN_FREE_BYTES = 4 << 20
R = TypeVar("R")
_STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
translated = translating(lambda: _STORE_ERRORS)


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
    lease_margin_s = 1.0

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

    @translated
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

    @translated
    async def holds(self, trade_no: str, status: int) -> bool:
        """Whether this (tradeNo, status) was accepted before, whatever became of it."""
        rows = await self._run(
            "SELECT 1 FROM deliveries WHERE trade_no = ? AND status = ?", trade_no, status
        )
        return bool(rows)

    @translated
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

    @translated
    async def next_due_at(self) -> float | None:
        rows = await self._run("SELECT MIN(next_at) FROM deliveries WHERE state = ?", PENDING)
        value = rows[0][0] if rows else None
        return float(value) if value is not None else None

    @translated
    async def delivered(self, delivery_id: int) -> None:
        await self._change(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, last_error = ''"
            " WHERE id = ?",
            DELIVERED,
            delivery_id,
        )

    @translated
    async def failed(self, delivery_id: int, error: str, next_at: float, dead: bool) -> None:
        await self._change(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, last_error = ?,"
            " next_at = ? WHERE id = ?",
            DEAD if dead else PENDING,
            error,
            next_at,
            delivery_id,
        )

    @translated
    async def listing(self, states: tuple[str, ...]) -> list[Delivery]:
        marks = ", ".join("?" for _ in states)
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM deliveries WHERE state IN ({marks}) ORDER BY id",  # noqa: S608 - only ? marks
            *states,
        )
        return [Delivery(*row) for row in rows]

    @translated
    async def counts(self) -> dict[str, int]:
        rows = await self._run(
            "SELECT state, COUNT(*) FROM deliveries WHERE state IN (?, ?) GROUP BY state",
            PENDING,
            DEAD,
        )
        return {PENDING: 0, DEAD: 0, **{state: count for state, count in rows}}

    @translated
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

    @translated
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

    @translated
    async def sign_seen(self, sign: str, now: float) -> bool:
        """Whether a callback with this sign was accepted before, within the replay window."""
        rows = await self._run(
            "SELECT 1 FROM seen_signs WHERE sign = ? AND expires_at > ?", sign, now
        )
        return bool(rows)

    @translated
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

    @translated
    async def close(self) -> None:
        with self._lock:
            self._db.close()
