"""The gateway's series: the documented names, and what each call of Metrics adds."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import CURRENT_CALL, NONE, OTHER, Metrics, UpstreamCall


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


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


async def test_a_request_is_counted_by_the_end_of_its_turn() -> None:
    metrics = Metrics()
    metrics.observe_request("demo", "orders", OTHER, "GET", 200, 0.01)
    labels = {"app": "demo", "caller": "orders", "route": OTHER, "method": "GET", "status": "200"}
    assert _value(metrics, "neu_gateway_requests_total", **labels) == 0  # added up
    await asyncio.sleep(0)  # wait-ok: one turn of the event loop is what is tested
    assert _value(metrics, "neu_gateway_requests_total", **labels) == 1


def test_without_an_event_loop_a_request_is_counted_at_once() -> None:
    metrics = Metrics()
    metrics.observe_request("demo", "orders", OTHER, "GET", 200, 0.01)
    labels = {"app": "demo", "caller": "orders", "route": OTHER, "method": "GET", "status": "200"}
    assert _value(metrics, "neu_gateway_requests_total", **labels) == 1


def test_a_method_outside_the_platforms_is_other() -> None:
    metrics = Metrics()
    metrics.observe_request("demo", "orders", OTHER, "PROPFIND", 405, 0.01)
    labels = {"app": "demo", "caller": "orders", "route": OTHER, "method": OTHER, "status": "405"}
    assert _value(metrics, "neu_gateway_requests_total", **labels) == 1


def test_an_upstream_call_fills_in_the_requests_access_line() -> None:
    metrics = Metrics()
    call = UpstreamCall()
    token = CURRENT_CALL.set(call)
    try:
        metrics.observe_upstream("demo", OTHER, "200", "10001", 0.25)
        metrics.observe_upstream("demo", OTHER, "200", "200", 0.5)
    finally:
        CURRENT_CALL.reset(token)
    assert call == UpstreamCall(http_status="200", platform_status="200", seconds=0.75)


def test_listener_refusals_and_evictions_are_counted() -> None:
    metrics = Metrics()
    metrics.count_refused(431)
    metrics.count_evicted("idle")
    metrics.count_evicted("idle")
    refused = {"app": NONE, "caller": NONE, "route": OTHER, "method": OTHER, "status": "431"}
    assert _value(metrics, "neu_gateway_requests_total", **refused) == 1
    assert _value(metrics, "neu_gateway_connections_evicted_total", waiting_on="idle") == 2


async def test_a_scrape_runs_each_refresh_first() -> None:
    metrics = Metrics()

    async def refresh() -> None:
        metrics.outbox_deliveries.labels("pending").set(3)

    metrics.on_scrape(refresh)
    assert b'neu_gateway_outbox_deliveries{state="pending"} 3.0' in await metrics.exposition()


def test_series_a_dashboard_reads_exist_from_the_start() -> None:
    metrics = Metrics()
    assert _value(metrics, "neu_gateway_config_reloads_total", result="failed") == 0
    assert _value(metrics, "neu_gateway_deliveries_total", outcome="dead") == 0
