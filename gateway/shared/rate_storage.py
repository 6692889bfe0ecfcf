"""The count behind the rate limits shared by every process and replica (`scope: shared`):
`limits`' async Redis storage and one of its strategies, over the shared Redis.

The storage connects as the gateway's own clients do (redis_clients: the same timeouts, short
retry, credentials and TLS), and only through `limits`' public constructors and methods:

- url and Sentinel: `RedisStorage` over the connection pool of redis_clients.open_primary, which
  the gateway owns and closes. (`RedisSentinelStorage` would make clients of its own that
  `limits` gives no way to close, read from replicas, and send the data nodes' password to
  sentinels that may have none.)
- Cluster: `RedisClusterStorage`, given the same connection options. `limits` gives no way to
  close its client: its connections end with the process.

`limits` and redis-py are imported at the first count, so a gateway whose callers share no rate
neither loads them nor connects.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.config.model import RedisTarget
from gateway.core.ratelimit import Window
from gateway.shared.redis_clients import close_client, connection_options, open_primary

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.aio.storage import Storage
    from limits.aio.strategies import RateLimiter

# Each caller's keys: {prefix}ratelimit:{caller/<name>/<requests>/<seconds>/second} (and the
# previous window's, beside it with "/-1"); the braces keep both in one slot of a Cluster.
KEY_SPACE = "ratelimit"
NAMESPACE = "caller"


class SharedCountError(Exception):
    """The shared count did not answer, or not in time. The message names the kind of failure
    only: a URL could carry a password."""


@dataclass
class _Opened:
    limiter: RateLimiter
    # What a call may raise when Redis fails: limits' StorageError first, wrapping redis-py's.
    failures: tuple[type[BaseException], ...]
    close: Callable[[], Awaitable[None]] | None


class SharedCounter:
    """Each caller's requests, counted in the shared Redis for every process and replica."""

    def __init__(self, target: RedisTarget) -> None:
        self._target = target
        self._opened: _Opened | None = None
        self._items: dict[Window, RateLimitItem] = {}

    @property
    def where(self) -> str:
        """Which Redis, fit to print."""
        return self._target.where

    async def take(self, name: str, window: Window) -> float | None:
        """Counts one of the caller's requests: None when it may go, else the seconds until
        one may (the count is unchanged). Raises SharedCountError when Redis does not answer
        within cache.timeout_s, each call."""
        opened = self._opened or self._open()
        item = self._item(window)
        try:
            async with asyncio.timeout(self._target.timeout_s):
                if await opened.limiter.hit(item, name):
                    return None
            async with asyncio.timeout(self._target.timeout_s):
                stats = await opened.limiter.get_window_stats(item, name)
        except opened.failures as exc:
            raise _failure(exc, opened.failures[0]) from exc
        # limits' own clock: the reset is the Unix time of the next free place in the window.
        return max(0.0, stats.reset_time - time.time())

    async def close(self) -> None:
        opened, self._opened = self._opened, None
        if opened is not None and opened.close is not None:
            await opened.close()

    def _item(self, window: Window) -> RateLimitItem:
        item = self._items.get(window)
        if item is None:
            from limits import RateLimitItemPerSecond

            item = self._items[window] = RateLimitItemPerSecond(
                window.requests, window.seconds, namespace=NAMESPACE
            )
        return item

    def _open(self) -> _Opened:
        from limits.aio.strategies import SlidingWindowCounterRateLimiter
        from limits.errors import StorageError
        from redis.exceptions import RedisClusterException, RedisError

        # TypeError and ValueError: redis-py's answer to a URL option it cannot use;
        # RedisClusterException: no startup node reachable (it is no RedisError).
        failures = (
            StorageError,
            RedisError,
            RedisClusterException,
            OSError,
            TimeoutError,
            TypeError,
            ValueError,
        )
        try:
            storage, close = open_storage(self._target)
        except failures as exc:
            raise _failure(exc, StorageError) from exc
        # The sliding window counter, not the moving window: it keeps two numbers a caller
        # (this window's count and the last one's) however high the rate, where the moving
        # window keeps a timestamp for each request in the window (a million at
        # requests_per_s: 1000000) and walks that list in Redis on each request; and it reads
        # Redis's clock alone (the keys' TTLs), where the moving window stamps each request
        # with its replica's own clock. Its price: the last window's count is taken as spread
        # evenly, so a burst at a window's end and another at the next one's start may let up
        # to twice the window's requests through within one window's length; over longer
        # spans the rate holds.
        self._opened = _Opened(SlidingWindowCounterRateLimiter(storage), failures, close)
        return self._opened


def open_storage(target: RedisTarget) -> tuple[Storage, Callable[[], Awaitable[None]] | None]:
    """`limits`' storage of the shared Redis, and what closes it (None: nothing can)."""
    from limits.aio.storage import RedisClusterStorage, RedisStorage

    common: dict[str, Any] = {
        "implementation": "redispy",
        "key_prefix": f"{target.prefix}{KEY_SPACE}",
        # limits' StorageError for every redis-py error, whatever the call.
        "wrap_exceptions": True,
    }
    if target.form == "cluster":
        nodes = ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in target.nodes
        )
        return RedisClusterStorage(
            f"redis+cluster://{nodes}", **common, **connection_options(target)
        ), None
    client = open_primary(target)
    # The URI only names the kind of server: the pool is what connects. (A documented option,
    # though limits' annotation of **options leaves out anything but float, str and bool.)
    common["connection_pool"] = client.connection_pool
    return RedisStorage("redis://", **common), functools.partial(close_client, client)


def _failure(exc: BaseException, storage_error: type[BaseException]) -> SharedCountError:
    # limits' StorageError is raised from redis-py's: name that one.
    cause = exc.__cause__ if isinstance(exc, storage_error) and exc.__cause__ else exc
    return SharedCountError(type(cause).__name__)
