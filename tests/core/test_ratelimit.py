"""The token bucket behind a caller's rate_limit, and the window of whole seconds a shared one
is counted in."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.core.ratelimit import Rate, TokenBucket, Window

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


# As a config gives them: decimals, from one request a day to the schema's million a second.
decimal_rates = st.decimals(
    min_value="0.00001", max_value=1_000_000, places=5, allow_nan=False, allow_infinity=False
).filter(lambda value: value > 0)
bursts = st.integers(min_value=1, max_value=1_000_000)


@given(decimal_rates, bursts)
@example(20, 20).via("the issue's caller: 20 in each second")
@example("0.5", 1).via("one request every two seconds")
@example("0.3", 3).via("0.3 is 3 in 10 s, not 3 in 11 (its binary neighbour)")
@example("2.5", 1).via("a fraction of a request a window is lost")
@example(1_000_000, 1).via("a burst below a second's worth")
def test_a_shared_window_holds_the_burst_and_never_more_than_the_rate(
    per_s: object, burst: int
) -> None:
    rate = Rate(float(str(per_s)), burst)
    window = rate.window()
    exact = Fraction(str(per_s))
    assert window.seconds >= 1
    assert burst <= window.requests < burst + exact, "at once: the burst, less than a second more"
    assert Fraction(window.requests, window.seconds) <= exact, "never above the rate"
    assert window.requests > exact * window.seconds - 1, "less than a request a window lost"
    assert window.seconds == 1 or (window.seconds - 1) * exact < burst, "the shortest window"


@pytest.mark.parametrize(
    ("per_s", "burst", "window"),
    [
        (20, 20, Window(20, 1)),
        (20, 5, Window(20, 1)),
        (20, 21, Window(40, 2)),
        (0.5, 1, Window(1, 2)),
        (0.5, 2, Window(2, 4)),
        (0.3, 3, Window(3, 10)),
        (2.5, 1, Window(2, 1)),
        (2.5, 3, Window(5, 2)),
    ],
)
def test_the_documented_windows(per_s: float, burst: int, window: Window) -> None:
    assert Rate(per_s, burst, shared=True).window() == window
