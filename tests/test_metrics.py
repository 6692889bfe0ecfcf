"""Metric labels stay bounded whatever callers send."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.endpoints import ENDPOINTS
from gateway.metrics import OTHER, Metrics, route_label


@given(st.text())
def test_a_made_up_path_is_other(path: str) -> None:
    assert route_label(path) in {*ENDPOINTS, OTHER}


def test_every_documented_path_is_its_own_route() -> None:
    assert all(route_label(path) == path for path in ENDPOINTS)


async def test_the_names_are_the_documented_ones() -> None:
    metrics = Metrics()
    metrics.observe_request("demo", "orders", OTHER, "GET", 200, 0.01)
    metrics.observe_upstream("demo", OTHER, "200", "none", 0.01)
    metrics.count_token("demo", "hit")
    metrics.callbacks.labels("demo", "accepted").inc()
    names = {
        family.name
        for family in text_string_to_metric_families((await metrics.exposition()).decode())
    }
    assert names >= {
        "neu_gateway_requests",
        "neu_gateway_request_duration_seconds",
        "neu_gateway_requests_in_flight",
        "neu_gateway_upstream_requests",
        "neu_gateway_upstream_duration_seconds",
        "neu_gateway_token_cache",
        "neu_gateway_token_cache_entries",
        "neu_gateway_callbacks",
        "neu_gateway_outbox_deliveries",
        "neu_gateway_deliveries",
        "neu_gateway_config_reloads",
        "neu_gateway_config_loaded_timestamp_seconds",
        "neu_gateway_build_info",
    }


_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SECONDS = st.one_of(
    st.sampled_from([0.0, *_BOUNDS]),
    st.floats(min_value=0, max_value=120, allow_nan=False),
)
_CALLS = st.lists(
    st.tuples(st.sampled_from(["demo", "shop"]), st.sampled_from([200, 400, 502]), _SECONDS),
    max_size=40,
)


def _samples(exposition: bytes, prefix: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition.decode())
        if family.name.startswith(prefix)
        for sample in family.samples
    }


@given(_CALLS, st.integers(min_value=0, max_value=40))
async def test_the_series_hold_what_observing_each_value_would(
    calls: list[tuple[str, int, float]], scrape_after: int
) -> None:
    """Requests are added up per turn of the event loop: a scrape at any point shows what
    prometheus-client's own inc() and observe() of each value, one at a time, would."""
    metrics = Metrics()
    registry = CollectorRegistry()
    requests = Counter(
        "neu_gateway_requests", "", ["app", "caller", "route", "method", "status"],
        registry=registry,
    )  # fmt: skip
    durations = Histogram(
        "neu_gateway_request_duration_seconds", "", ["app", "route"], buckets=_BOUNDS,
        registry=registry,
    )  # fmt: skip
    upstream = Counter(
        "neu_gateway_upstream_requests", "", ["app", "route", "http_status", "platform_status"],
        registry=registry,
    )  # fmt: skip
    upstream_durations = Histogram(
        "neu_gateway_upstream_duration_seconds", "", ["app", "route"], buckets=_BOUNDS,
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


async def test_a_request_is_counted_by_the_end_of_its_turn() -> None:
    metrics = Metrics()
    metrics.observe_request("demo", "orders", OTHER, "GET", 200, 0.01)
    counted = metrics.requests.labels("demo", "orders", OTHER, "GET", "200")
    assert counted._value.get() == 0  # added up until the turn ends
    await asyncio.sleep(0)  # wait-ok: one turn of the event loop is what is tested
    assert counted._value.get() == 1
