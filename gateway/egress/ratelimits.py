"""What each caller may take of the gateway, checked at admission: its request rate (its
`rate_limit`: counted in this process, or shared by every process and replica) and its
requests in flight in this process (its `max_in_flight`)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from gateway import logs
from gateway.core.access import Caller
from gateway.core.clock import Clock
from gateway.core.errors import RateLimited, TooManyInFlight, quoted_name
from gateway.core.headers import RETRY_AFTER
from gateway.core.ratelimit import Rate, TokenBucket, Window
from gateway.shared.rate_storage import SharedCounter, SharedCountError

log = logs.logger("neu_gateway.ratelimits")

# No request's end can be foreseen; a second is a short wait that does not hammer.
IN_FLIGHT_RETRY_AFTER_S = 1
DEFAULT_SETTING = "limits.max_in_flight_per_caller"
# How long the shared count stays skipped after it failed, so an outage does not hold every
# request of a shared rate for cache.timeout_s.
RETRY_SHARED_AFTER_S = 1.0


class CallerRates:
    """Each rate-limited caller's count.

    A rate of `scope: process`: a token bucket in this process, made at the caller's first
    request, and made anew when a reload changes its rate (a reload that leaves the rate as it
    was keeps the bucket). A shared rate: the shared count (Redis), whose keys name the
    window, so a changed rate starts a count of its own. While Redis fails, a shared rate is
    counted in a bucket of this process as a process rate is, each such request told to
    `on_fallback`, and Redis is asked again a second later.
    """

    def __init__(
        self,
        clock: Clock,
        shared: SharedCounter | None = None,
        on_fallback: Callable[[str], None] | None = None,
    ) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._shared = shared
        self._on_fallback = on_fallback
        self._shared_down = False
        self._skip_shared_until = 0.0
        # A caller the shared count refused, until when no place in its window frees: its
        # requests till then are refused here, so a caller far past its rate costs Redis
        # nothing (nothing frees one sooner: the count only falls with time).
        self._full_until: dict[str, tuple[Window, float]] = {}
        # Each shared rate's window, worked out once (exact fractions: 25 µs each time).
        self._windows: dict[Rate, Window] = {}

    async def check(self, caller: Caller) -> None:
        """Counts one of the caller's requests, or raises RateLimited with a Retry-After."""
        rate = caller.rate
        if rate is None:
            return
        if rate.shared and self._shared is not None:
            window = self._windows.get(rate)
            if window is None:
                window = self._windows[rate] = rate.window()
            wait_s = await self._shared_wait(self._shared, caller.name, window)
            if wait_s is not None:
                if wait_s > 0:
                    raise _over_rate(caller.name, rate, wait_s)
                return
            if self._on_fallback is not None:
                self._on_fallback(caller.name)
        now = self._clock.monotonic()
        bucket = self._buckets.get(caller.name)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[caller.name] = TokenBucket(rate, now)
        wait_s = bucket.take(now)
        if wait_s > 0:
            raise _over_rate(caller.name, rate, wait_s)

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()

    async def _shared_wait(self, shared: SharedCounter, name: str, window: Window) -> float | None:
        """0.0: counted, the request may go; above 0: the seconds until one may; None: the
        shared count could not be asked (the request is counted in this process)."""
        now = self._clock.monotonic()
        full = self._full_until.get(name)
        if full is not None:
            if full[0] == window and now < full[1]:
                return full[1] - now
            del self._full_until[name]
        if self._shared_down and now < self._skip_shared_until:
            return None
        try:
            wait_s = await shared.take(name, window)
        except SharedCountError as exc:
            self._failed(shared, exc)
            return None
        self._recovered(shared)
        if wait_s is None:
            return 0.0
        # A place may free within the millisecond (the keys' TTLs): still refused now.
        wait_s = max(wait_s, 0.001)
        self._full_until[name] = (window, self._clock.monotonic() + wait_s)
        return wait_s

    def _failed(self, shared: SharedCounter, exc: SharedCountError) -> None:
        self._skip_shared_until = self._clock.monotonic() + RETRY_SHARED_AFTER_S
        if not self._shared_down:
            self._shared_down = True
            log.warning(
                "shared rate limits: %s unavailable (%s); each process counts them on its "
                "own meanwhile",
                shared.where,
                exc,
            )

    def _recovered(self, shared: SharedCounter) -> None:
        if self._shared_down:
            self._shared_down = False
            log.warning("shared rate limits: %s is back, counting for every process", shared.where)


def _over_rate(name: str, rate: Rate, wait_s: float) -> RateLimited:
    retry_after = max(1, math.ceil(wait_s))
    return RateLimited(
        f"caller {quoted_name(name)} is over its rate limit ({rate}); retry in {retry_after} s",
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
