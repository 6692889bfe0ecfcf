"""The one place the gateway reads the time and waits for it to pass, so tests can hold it
still or move it on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch, as the platform's `timestamp` wants them."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, for measuring durations."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Returns once `seconds` of monotonic time have passed."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def within(clock: Clock, seconds: float, awaited: Awaitable[T]) -> T:
    """`awaited`'s result if it comes within `seconds` of the clock's time.

    Raises TimeoutError otherwise, and cancels `awaited`: shield a future others share.
    asyncio.timeout would count loop time, which a test's clock cannot move.
    """
    work = asyncio.ensure_future(awaited)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((work, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        timed_out = not work.done()
        if timed_out:
            work.cancel()
    if timed_out:
        raise TimeoutError
    return work.result()
