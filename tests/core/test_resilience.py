"""The clock-skew estimate and the breaker, with the time passed in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.resilience import Breaker, BreakerState, Permit, Skew


@given(
    offset_s=st.floats(min_value=-6 * 86400, max_value=6 * 86400),
    now_s=st.floats(min_value=1e9, max_value=2e9),
    trip_s=st.floats(min_value=0, max_value=2),
)
def test_two_agreeing_answers_teach_the_offset_within_the_date_headers_second(
    offset_s: float, now_s: float, trip_s: float
) -> None:
    skew = Skew(max_skew_s=30)
    platform_s = now_s + trip_s / 2 + offset_s
    assert skew.observe(now_s, now_s + trip_s, float(int(platform_s))) is False
    assert skew.offset_s == 0, "one answer alone moves nothing"
    skew.observe(now_s, now_s + trip_s, float(int(platform_s)))
    assert abs(skew.offset_s - offset_s) <= 0.5 + trip_s / 2 + 1e-6
    assert skew.correcting == (abs(skew.offset_s) > 30)
    expected = round(skew.offset_s * 1000) if skew.correcting else 0
    assert skew.now_ms(1_700_000_000_000) == 1_700_000_000_000 + expected


def test_correction_starts_and_stops_with_the_offset() -> None:
    skew = Skew(max_skew_s=30)
    skew.observe(1000.0, 1000.1, 1600.0)
    assert skew.observe(1001.0, 1001.1, 1601.0) is True
    assert skew.correcting
    assert skew.observe(2000.0, 2000.1, 2600.0) is False
    skew.observe(3000.0, 3000.1, 3000.0)
    assert skew.observe(3001.0, 3001.1, 3001.0) is True
    assert not skew.correcting
    assert skew.now_ms(5) == 5


def test_a_slow_round_trip_teaches_nothing() -> None:
    skew = Skew(max_skew_s=30)
    skew.observe(1000.0, 1100.0, 1650.0)
    assert skew.observe(1001.0, 1101.0, 1651.0) is False
    assert not skew.correcting


@given(st.sampled_from([253402300799.0, 0.0, -1e9, 1e12]))
def test_an_absurd_date_is_ignored(date_s: float) -> None:
    skew = Skew(max_skew_s=30)
    for _ in range(3):
        assert skew.observe(1.7e9, 1.7e9, date_s) is False
    assert skew.adopt() is False
    assert skew.now_ms(1_700_000_000_000) == 1_700_000_000_000


def test_a_flipping_date_never_agrees_with_itself() -> None:
    skew = Skew(max_skew_s=30)
    changes = [
        skew.observe(1.7e9 + n, 1.7e9 + n, 1.7e9 + n + (3600 if n % 2 else 0)) for n in range(20)
    ]
    assert not any(changes)
    assert not skew.correcting


def test_a_timestamp_refusal_adopts_the_latest_date_alone() -> None:
    skew = Skew(max_skew_s=30)
    skew.observe(1000.0, 1000.1, 1600.0)
    assert skew.adopt() is True
    assert skew.correcting


def test_the_breaker_cycle() -> None:
    breaker = Breaker(failures=2, cooldown_s=10)
    assert breaker.allow(0) is Permit.CALL
    assert breaker.failed(0) is None
    assert breaker.failed(1) is BreakerState.OPEN
    assert breaker.allow(5) is Permit.REFUSED
    assert breaker.retry_after_s(5) == 6
    assert breaker.allow(11) is Permit.PROBE
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow(11) is Permit.REFUSED, "only one probe"
    assert breaker.failed(12) is BreakerState.OPEN
    assert breaker.allow(22) is Permit.PROBE
    assert breaker.succeeded() is BreakerState.CLOSED
    assert breaker.allow(22) is Permit.CALL


def test_only_the_probe_whose_caller_left_lets_another_probe_through() -> None:
    breaker = Breaker(failures=1, cooldown_s=1)
    breaker.failed(0)
    assert breaker.allow(2) is Permit.PROBE
    # A call let through before the breaker opened, whose caller leaves now: no second probe.
    breaker.released(Permit.CALL)
    assert breaker.allow(2) is Permit.REFUSED
    breaker.released(Permit.PROBE)
    assert breaker.allow(2) is Permit.PROBE
