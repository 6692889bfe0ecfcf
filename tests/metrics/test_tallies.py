"""Values added up per turn of the event loop show, once flushed, what prometheus-client's own
inc() and observe() of each value, one at a time, would."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import OTHER, Metrics
from gateway.metrics.registry import BUCKETS
from gateway.metrics.tallies import Count, Durations

# The gateway's own bounds, so each is tried as a value too.
BOUNDS = BUCKETS
SECONDS = st.one_of(
    st.sampled_from([0.0, *BOUNDS]),
    st.floats(min_value=0, max_value=120, allow_nan=False),
)
CALLS = st.lists(
    st.tuples(st.sampled_from(["demo", "shop"]), st.sampled_from([200, 400, 502]), SECONDS),
    max_size=40,
)


def _samples(exposition: bytes, prefix: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition.decode())
        if family.name.startswith(prefix)
        for sample in family.samples
    }


@given(st.lists(SECONDS, max_size=60))
def test_a_durations_tally_adds_what_observe_would(values: list[float]) -> None:
    registry = CollectorRegistry()
    tallied = Histogram("tallied", "", buckets=BOUNDS, registry=registry)
    observed = Histogram("observed", "", buckets=BOUNDS, registry=registry)
    durations = Durations(tallied)
    for value in values:
        durations.add(value)
        observed.observe(value)
    durations.flush()
    ours = _samples(generate_latest(registry), "tallied")
    theirs = _samples(generate_latest(registry), "observed")
    assert [value for _, value in sorted(ours.items())] == pytest.approx(
        [value for _, value in sorted(theirs.items())], rel=1e-9, abs=1e-12
    )


def test_a_flushed_tally_starts_again_from_nothing() -> None:
    registry = CollectorRegistry()
    counter = Counter("counted", "", registry=registry)
    histogram = Histogram("timed", "", buckets=BOUNDS, registry=registry)
    count, durations = Count(counter), Durations(histogram)
    count.add()
    durations.add(0.2)
    for _ in range(2):
        count.flush()
        durations.flush()
    assert registry.get_sample_value("counted_total") == 1
    assert registry.get_sample_value("timed_count") == 1
    assert registry.get_sample_value("timed_sum") == pytest.approx(0.2)


# Each example builds a registry and scrapes it (reading /proc for process_*) three times: on
# a loaded machine that passes 200 ms, and time is not what is tested.
@settings(deadline=None)
@given(CALLS, st.integers(min_value=0, max_value=40))
async def test_the_series_hold_what_observing_each_value_would(
    calls: list[tuple[str, int, float]], scrape_after: int
) -> None:
    """Through Metrics, with a scrape at any point between the requests."""
    metrics = Metrics()
    registry = CollectorRegistry()
    requests = Counter(
        "neu_gateway_requests", "", ["app", "caller", "route", "method", "status"],
        registry=registry,
    )  # fmt: skip
    durations = Histogram(
        "neu_gateway_request_duration_seconds", "", ["app", "route"], buckets=BOUNDS,
        registry=registry,
    )  # fmt: skip
    upstream = Counter(
        "neu_gateway_upstream_requests", "", ["app", "route", "status", "platform_status"],
        registry=registry,
    )  # fmt: skip
    upstream_durations = Histogram(
        "neu_gateway_upstream_duration_seconds", "", ["app", "route"], buckets=BOUNDS,
        registry=registry,
    )  # fmt: skip
    for index, (app, status, seconds) in enumerate(calls):
        if index == scrape_after:
            await metrics.exposition()
        metrics.observe_request(app, "orders", OTHER, "GET", status, seconds)
        metrics.observe_upstream(app, OTHER, str(status), "200", seconds / 2)
        requests.labels(app, "orders", OTHER, "GET", str(status)).inc()
        durations.labels(app, OTHER).observe(seconds)
        upstream.labels(app, OTHER, str(status), "200").inc()
        upstream_durations.labels(app, OTHER).observe(seconds / 2)
    ours = _samples(await metrics.exposition(), "neu_gateway_request")
    ours.update(_samples(await metrics.exposition(), "neu_gateway_upstream"))
    reference = _samples(generate_latest(registry), "neu_gateway_request")
    reference.update(_samples(generate_latest(registry), "neu_gateway_upstream"))
    assert ours.keys() == reference.keys()
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
