"""The platform's clock learnt from its Date headers: logged and shown when it drifts."""

from __future__ import annotations

import email.utils
import logging

import pytest

from gateway.metrics import Metrics
from gateway.upstream.skews import Skews
from tests.support.clock import MutableClock

BASE = "https://platform.test"


def date(clock: MutableClock, offset_s: float) -> str:
    return email.utils.formatdate(clock.now_ms() / 1000 + offset_s, usegmt=True)


def shown(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("neu_gateway_clock_offset_seconds", {"app": "demo"})


def learn(skews: Skews, clock: MutableClock, offset_s: float) -> None:
    skews.learn(BASE, "demo", clock.now_ms() / 1000, date(clock, offset_s))


async def test_a_drift_two_answers_agree_on_is_adopted_logged_and_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "neu_gateway.upstream")
    clock, metrics = MutableClock(), Metrics()
    skews = Skews(30, clock, metrics)
    assert skews.offset_s(BASE) == 0.0
    learn(skews, clock, 600)
    assert not skews.skew(BASE).correcting, "one answer alone moves nothing"
    # What the latest answer said, confirmed or not (check-config --probe shows it).
    assert skews.offset_s(BASE) == pytest.approx(600, abs=1.5)
    learn(skews, clock, 600)
    skew = skews.skew(BASE)
    assert skew.correcting
    assert skew.now_ms(clock.now_ms()) - clock.now_ms() == pytest.approx(600_000, abs=1500)
    assert "s off the platform's at https://platform.test (app demo)" in caplog.text
    assert shown(metrics) == pytest.approx(600, abs=1.5)
    learn(skews, clock, 0)
    learn(skews, clock, 0)
    assert not skew.correcting
    assert "agrees with the platform's at https://platform.test again" in caplog.text
    assert shown(metrics) == pytest.approx(0, abs=1.5)


@pytest.mark.parametrize("value", [None, "", "yesterday", "Mon, 99 Foo 2024 99:99:99 GMT"])
def test_a_missing_or_unreadable_date_teaches_nothing(value: str | None) -> None:
    clock, metrics = MutableClock(), Metrics()
    skews = Skews(30, clock, metrics)
    skews.learn(BASE, "demo", clock.now_ms() / 1000, value)
    assert skews.offset_s(BASE) == 0.0
    assert shown(metrics) is None


def test_each_base_url_keeps_its_own_clock() -> None:
    clock = MutableClock()
    skews = Skews(30, clock, Metrics())
    learn(skews, clock, 600)
    assert skews.offset_s("https://other.test") == 0.0
    assert skews.skew("https://other.test") is not skews.skew(BASE)
