"""The one place the gateway reads the time and waits for it to pass, so tests can hold it
still or move it on."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


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
