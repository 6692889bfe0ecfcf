"""The durable outbox of verified payment callbacks, and the record of signs already seen:
the protocol and its types (base), kept in SQLite (sqlite, the default) or Redis (redis)."""

from gateway.callbacks.outbox.base import (
    DEAD,
    DELIVERED,
    PENDING,
    Delivery,
    Outbox,
    OutboxError,
    OutboxNotWritable,
)
from gateway.callbacks.outbox.redis import RedisOutbox
from gateway.callbacks.outbox.sqlite import (
    MIN_FREE_BYTES,
    SQLITE_CHANGE_CHECK_S,
    SqliteOutbox,
    sqlite_path,
)

__all__ = [
    "DEAD",
    "DELIVERED",
    "MIN_FREE_BYTES",
    "PENDING",
    "SQLITE_CHANGE_CHECK_S",
    "Delivery",
    "Outbox",
    "OutboxError",
    "OutboxNotWritable",
    "RedisOutbox",
    "SqliteOutbox",
    "sqlite_path",
]
