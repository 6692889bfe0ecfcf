"""The token bucket behind a caller's rate_limit."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.ratelimit import Rate, TokenBucket

rates = st.builds(
    Rate,
    per_s=st.floats(min_value=0.01, max_value=1000, allow_nan=False),
    burst=st.integers(min_value=1, max_value=100),
)
# Gaps between requests, in seconds.
gaps = st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), max_size=200)


@given(rates, gaps)
def test_never_more_than_the_burst_and_the_rate_allow(rate: Rate, spacing: list[float]) -> None:
    bucket = TokenBucket(rate, 0.0)
    now, allowed = 0.0, 0
    for gap in spacing:
        now += gap
        if bucket.take(now) == 0.0:
            allowed += 1
        # Up to now, at most a full bucket and what the rate added since.
        assert allowed <= rate.burst + rate.per_s * now + 1e-6


@given(rates, gaps)
def test_a_refused_request_may_go_after_the_wait_it_was_told(
    rate: Rate, spacing: list[float]
) -> None:
    bucket = TokenBucket(rate, 0.0)
    now = 0.0
    for gap in spacing:
        now += gap
        wait = bucket.take(now)
        if wait > 0:
            assert bucket.take(now + wait * (1 + 1e-9) + 1e-9) == 0.0
            now += wait * (1 + 1e-9) + 1e-9


def test_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(Rate(per_s=2, burst=3), 100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.5) == 0.0
    assert bucket.take(100.5) == pytest.approx(0.5)


def test_a_clock_that_goes_back_refills_nothing() -> None:
    bucket = TokenBucket(Rate(per_s=1, burst=1), 10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) > 0
    assert bucket.take(10.5) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("per_s", "burst"), [(0, 1), (-1, 1), (math.inf, 1), (math.nan, 1), (1, 0)]
)
def test_a_rate_needs_a_positive_finite_rate_and_a_burst(per_s: float, burst: int) -> None:
    with pytest.raises(ValueError, match="per_s > 0 and burst >= 1"):
        Rate(per_s, burst)


def test_a_rate_reads_as_a_sentence() -> None:
    assert str(Rate(1, 1)) == "1 request a second, bursts of 1"
    assert str(Rate(0.5, 2)) == "0.5 requests a second, bursts of 2"
