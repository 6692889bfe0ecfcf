"""The gateway's series: the documented names, and what each call of Metrics adds."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import CURRENT_CALL, NONE, OTHER, Metrics, UpstreamCall
from gateway.metrics.processes import WorkerProcesses


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
        "neu_gateway_connections",
        "neu_gateway_backend_up",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_cpu_seconds",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
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


async def test_a_scrape_runs_its_refreshes_at_once_so_their_waits_do_not_add_up() -> None:
    metrics = Metrics()
    started: list[str] = []
    both_started = asyncio.Event()

    def refresh(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            started.append(name)
            if len(started) == 2:
                both_started.set()
            # One after another, the first would wait here for good.
            await both_started.wait()

        return run

    metrics.on_scrape(refresh("cache"))
    metrics.on_scrape(refresh("outbox"))
    async with asyncio.timeout(5):
        await metrics.exposition()
    assert sorted(started) == ["cache", "outbox"]


def test_series_a_dashboard_reads_exist_from_the_start() -> None:
    metrics = Metrics()
    assert _value(metrics, "neu_gateway_config_reloads_total", result="failed") == 0
    assert _value(metrics, "neu_gateway_deliveries_total", outcome="dead") == 0


def test_durations_are_bucketed_from_a_quarter_of_a_millisecond() -> None:
    metrics = Metrics()
    metrics.observe_request("demo", "orders", OTHER, "GET", 200, 0.0002)
    metrics.observe_upstream("demo", OTHER, "200", "200", 0.0004)
    for name, le, count in [
        ("neu_gateway_request_duration_seconds_bucket", "0.00025", 1),
        ("neu_gateway_upstream_duration_seconds_bucket", "0.00025", 0),
        ("neu_gateway_upstream_duration_seconds_bucket", "0.0005", 1),
    ]:
        assert _value(metrics, name, app="demo", route=OTHER, le=le) == count, (name, le)


def test_an_upstream_calls_http_status_is_labelled_status_as_a_requests_is() -> None:
    metrics = Metrics()
    metrics.observe_upstream("demo", OTHER, "502", "none", 0.01)
    labels = {"app": "demo", "route": OTHER, "status": "502", "platform_status": "none"}
    assert _value(metrics, "neu_gateway_upstream_requests_total", **labels) == 1


def test_this_process_is_exported_as_process_series() -> None:
    metrics = Metrics()
    assert (_value(metrics, "process_resident_memory_bytes") or 0) > 0
    assert (_value(metrics, "process_open_fds") or 0) > 0
    start = _value(metrics, "process_start_time_seconds")
    assert start is not None
    assert start > 1_600_000_000


def test_each_worker_is_exported_by_its_pid(tmp_path: Path) -> None:
    """With several workers, the scraped one reads every live one's /proc (here: this
    process and its parent, as two workers; a pid that is gone has no series)."""
    pids = [os.getpid(), os.getppid()]
    for pid in [*pids, 2**22 + 1]:
        (tmp_path / f"gauge_livemax_{pid}.db").write_bytes(b"")
    families = {family.name: family for family in WorkerProcesses(tmp_path).collect()}
    assert families.keys() == {
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_cpu_seconds",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    }
    memory = families["process_resident_memory_bytes"]
    assert sorted(sample.labels["pid"] for sample in memory.samples) == sorted(map(str, pids))
    assert all(sample.value > 0 for sample in memory.samples)
    [cpu] = [s for s in families["process_cpu_seconds"].samples if s.labels["pid"] == str(pids[0])]
    assert cpu.name == "process_cpu_seconds_total"


def test_connections_are_counted_per_listener_from_zero() -> None:
    metrics = Metrics()
    egress = metrics.connections_on("egress")
    metrics.connections_on("admin")
    egress(1)
    egress(1)
    egress(-1)
    assert _value(metrics, "neu_gateway_connections", listener="egress") == 1
    assert _value(metrics, "neu_gateway_connections", listener="admin") == 0


def test_requests_in_flight_follow_each_change() -> None:
    metrics = Metrics()
    metrics.in_flight("orders", 1)
    metrics.in_flight("orders", 1)
    metrics.in_flight("billing", 1)
    metrics.in_flight("orders", -1)
    assert _value(metrics, "neu_gateway_requests_in_flight", caller="orders") == 1
    assert _value(metrics, "neu_gateway_requests_in_flight", caller="billing") == 1
