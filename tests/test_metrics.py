"""Metric labels stay bounded whatever callers send."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
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
