"""A clock the test moves by hand."""

from __future__ import annotations

import asyncio
import contextlib
import time


class MutableClock:
    """A clock the test moves by hand, wall time and monotonic time together."""

    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000
        self._skew = 0.0
        self._moved = asyncio.Event()
        self.sleepers = 0

    def now_ms(self) -> int:
        return self.now

    def monotonic(self) -> float:
        return time.monotonic() + self._skew

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)
        self._skew += seconds
        # Sleepers whose time has now come wake at once.
        self._moved.set()
        self._moved = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        """Until `seconds` of this clock have passed: real time, or the test's advance()."""
        deadline = self.monotonic() + seconds
        self.sleepers += 1
        try:
            while (left := deadline - self.monotonic()) > 0:
                moved = self._moved
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await moved.wait()
        finally:
            self.sleepers -= 1

    async def until_sleeping(self, count: int = 1) -> None:
        """Until `count` sleeps have begun, so an advance() reaches them."""
        for _ in range(1000):
            if self.sleepers >= count:
                return
            await asyncio.sleep(0.005)  # wait-ok: polls for the condition
        raise AssertionError(f"{self.sleepers} of {count} sleepers")
