"""A caller's request rate, as a token bucket. Pure: the time is passed in.

A bucket holds up to `burst` tokens and gains `per_s` of them a second; a request takes one.
So a caller may send `burst` requests at once after a quiet spell, and `per_s` a second for as
long as it likes, never more than `burst + per_s * t` in any `t` seconds.

A rate shared by every process is counted elsewhere (in Redis), in windows of whole seconds:
`Rate.window()` is the window that keeps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


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

    def window(self) -> Window:
        """The rate as a count in a window of whole seconds (the shared counter's
        granularity): the shortest window that holds the burst, ceil(burst / per_s) seconds,
        taking per_s of its worth rounded down to whole requests.

        So at once at least `burst` and fewer than `burst + per_s` requests may go, and a
        window never takes more than per_s a second (a fraction of a request a window is
        lost: 2.5 a second with a burst of 1 is 2 in each second).
        """
        # The decimal the config gave, not its binary neighbour: 0.3 with a burst of 3 is
        # 3 in 10 s, where 0.29999999999999998 would make it 3 in 11.
        per_s = Fraction(repr(self.per_s))
        seconds = max(1, math.ceil(self.burst / per_s))
        return Window(requests=max(1, math.floor(per_s * seconds)), seconds=seconds)


@dataclass(frozen=True)
class Window:
    """At most `requests` in any `seconds`."""

    requests: int
    seconds: int


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
