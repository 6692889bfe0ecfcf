"""Each caller's request rate in this process (its `rate_limit`), checked at admission."""

from __future__ import annotations

import math

from gateway.core.access import Caller
from gateway.core.errors import RateLimited, quoted_name
from gateway.core.ratelimit import TokenBucket


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
                headers={"Retry-After": str(retry_after)},
            )
