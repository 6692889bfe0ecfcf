"""What each caller may take of this process, checked at admission: its request rate (its
`rate_limit`) and its requests in flight (its `max_in_flight`)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from gateway.core.access import Caller
from gateway.core.errors import RateLimited, TooManyInFlight, quoted_name
from gateway.core.headers import RETRY_AFTER
from gateway.core.ratelimit import TokenBucket

# No request's end can be foreseen; a second is a short wait that does not hammer.
IN_FLIGHT_RETRY_AFTER_S = 1
DEFAULT_SETTING = "limits.max_in_flight_per_caller"


class CallerRates:
    """A token bucket per rate-limited caller, made at its first request, and made anew when a
    reload changes its rate (a reload that leaves the rate as it was keeps the bucket)."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, caller: Caller, now: float) -> None:
        """Takes one of the caller's tokens, or raises RateLimited with a Retry-After."""
        rate = caller.rate
        if rate is None:
            return
        bucket = self._buckets.get(caller.name)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[caller.name] = TokenBucket(rate, now)
        wait_s = bucket.take(now)
        if wait_s > 0:
            retry_after = max(1, math.ceil(wait_s))
            raise RateLimited(
                f"caller {quoted_name(caller.name)} is over its rate limit ({rate}); "
                f"retry in {retry_after} s",
                headers={RETRY_AFTER: str(retry_after)},
            )


class InFlight:
    """Each caller's requests in flight: admitted and not yet answered.

    Counted by caller name, so a reload that changes a caller's limit applies it to the next
    request while those in flight run on. Requests without a token count as one caller each
    kind (trusted, anonymous), apart from any configured caller of the same name.
    """

    def __init__(self, on_change: Callable[[str, int], None] | None = None) -> None:
        # (name, whether a configured caller) -> the tasks of its requests in flight.
        self._holders: dict[tuple[str, bool], set[asyncio.Task[Any]]] = {}
        # Told each request held (name, +1) and ended (name, -1): the metric's gauge.
        self._on_change = on_change

    def hold(self, name: str, configured: bool, limit: int, own: bool) -> None:
        """Counts the current request in flight for the caller until its task ends, or raises
        TooManyInFlight (with a Retry-After) and counts nothing. `configured`: a caller from
        the config, not a request without a token; `own`: the limit is the caller's own
        max_in_flight, not the default.

        aiohttp handles each request in a task of its own and writes the answer within it, so
        the task's end is the answer sent, or the request failed or was cancelled (its client
        went away): whichever way it ends, it no longer counts.
        """
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a request in flight is counted from within its own task")
        key = (name, configured)
        holders = self._holders.get(key)
        if holders is None:
            holders = self._holders[key] = set()
        if len(holders) >= limit and _without_ended(holders) >= limit:
            setting = f"callers.{name}.max_in_flight" if own else DEFAULT_SETTING
            raise TooManyInFlight(
                f"caller {quoted_name(name)} already has {len(holders)} requests in flight, "
                f"and {setting} allows {limit}; retry when one of them is answered",
                headers={RETRY_AFTER: str(IN_FLIGHT_RETRY_AFTER_S)},
            )
        holders.add(task)
        task.add_done_callback(holders.discard)
        on_change = self._on_change
        if on_change is not None:
            on_change(name, 1)
            task.add_done_callback(lambda _: on_change(name, -1))

    def count(self, name: str) -> int:
        """The caller's requests in flight now (with a token or without)."""
        return sum(
            _without_ended(holders) for (each, _), holders in self._holders.items() if each == name
        )


def _without_ended(holders: set[asyncio.Task[Any]]) -> int:
    """Drops the tasks that have ended (their done callbacks run a turn of the event loop
    later, and the next request on the connection may come first); how many are left."""
    holders.difference_update([task for task in holders if task.done()])
    return len(holders)
