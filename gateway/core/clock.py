"""The one place the gateway reads the time, so tests can hold it still."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch, as the platform's `timestamp` wants them."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, for measuring durations."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()
