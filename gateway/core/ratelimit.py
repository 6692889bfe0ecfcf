"""A caller's request rate, as a token bucket. Pure: the time is passed in.

A bucket holds up to `burst` tokens and gains `per_s` of them a second; a request takes one.
So a caller may send `burst` requests at once after a quiet spell, and `per_s` a second for as
long as it likes, never more than `burst + per_s * t` in any `t` seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """How many requests a second a caller may send, and how many at once."""

    per_s: float
    burst: int
    # Counted once for every process and replica (in Redis), not in each process.
    shared: bool = False

    def __post_init__(self) -> None:
        if not (self.per_s > 0 and math.isfinite(self.per_s)) or self.burst < 1:
            raise ValueError("a rate needs per_s > 0 and burst >= 1")

    def __str__(self) -> str:
        requests = "request" if self.per_s == 1 else "requests"
        return f"{self.per_s:g} {requests} a second, bursts of {self.burst}"


class TokenBucket:
    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self._tokens = float(rate.burst)
        self._updated = now

    def take(self, now: float) -> float:
        """0.0 when a request may go now (a token is taken); else the seconds until one may."""
        # A clock that went back (it should not: a monotonic one) refills nothing.
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(self.rate.burst), self._tokens + elapsed * self.rate.per_s)
        self._updated = max(now, self._updated)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate.per_s
