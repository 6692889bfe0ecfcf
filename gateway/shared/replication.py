"""When a write to Redis counts: once the replicas that a failover could promote have it.

Redis replicates asynchronously: a master that dies a moment after a write may take it along,
and the replica promoted in its place never had it. WAIT N blocks the connection that wrote
until N replicas have what it wrote (or a timeout), so a write that WAIT confirms survives the
master's loss. The gateway waits for cache.wait_replicas replicas, or for as many as the
master has connected if fewer: a master left alone after a failover has no replica a later
failover could promote, so waiting for one would only refuse every write until one joined.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

# How long the master's count of replicas is trusted: a replica that joins is waited for
# within this time, one that left is noticed at once (its WAIT falls short).
REPLICAS_KNOWN_S = 1.0


class NotAcknowledged(Exception):
    """Fewer replicas than asked for confirmed a write in time; the message says how many."""


class ReplicaWait:
    def __init__(
        self, wanted: int, timeout_s: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.wanted = wanted
        self._timeout_ms = max(1, int(timeout_s * 1000))
        self._monotonic = monotonic
        self._connected: int | None = None
        self._known_until = 0.0

    async def write(self, client: Redis, queue: Callable[[Pipeline], object]) -> list[Any]:
        """Runs the commands `queue` adds to a pipeline, then WAITs on the same connection;
        their results, or NotAcknowledged (the write may still have been made: it is only
        not known to survive a failover)."""
        replicas = await self._replicas(client) if self.wanted else 0
        async with client.pipeline(transaction=False) as pipe:
            queue(pipe)
            if replicas:
                pipe.execute_command("WAIT", replicas, self._timeout_ms)
            results: list[Any] = await pipe.execute()
        if replicas:
            acknowledged = int(results.pop())
            if acknowledged < replicas:
                self._known_until = 0.0
                raise NotAcknowledged(
                    f"{acknowledged} of {replicas} replicas had the write within "
                    f"{self._timeout_ms} ms (cache.wait_replicas, cache.wait_timeout_s)"
                )
        return results

    async def _replicas(self, client: Redis) -> int:
        now = self._monotonic()
        if self._connected is None or now >= self._known_until:
            role = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
            self._connected = len(role[2]) if _says(role[0], "master") else 0
            self._known_until = now + REPLICAS_KNOWN_S
        return min(self.wanted, self._connected)


def _says(value: bytes | str, word: str) -> bool:
    return (value.decode() if isinstance(value, bytes) else value) == word
