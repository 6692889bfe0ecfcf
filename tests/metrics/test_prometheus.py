"""Each prometheus-client internal the tallies rely on (gateway/metrics/prometheus.py) still
exists on the installed prometheus-client and behaves as relied on; and nothing else in
gateway/metrics touches one.

An upgrade that renames or changes one of them fails here, by name, first.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, multiprocess, values

import gateway.metrics
from gateway.metrics import MULTIPROCESS_DIR_ENV
from gateway.metrics.prometheus import add_observations, bucket_bounds, live_pids
from gateway.metrics.registry import BUCKETS

BOUNDS = BUCKETS
METRICS_DIR = Path(gateway.metrics.__file__).parent


def histogram(name: str = "seconds") -> Histogram:
    return Histogram(name, "", ["app"], buckets=BOUNDS, registry=CollectorRegistry())


def buckets_of(registry: CollectorRegistry, name: str) -> list[float]:
    """Each bucket's own count (the exposition's cumulative counts, taken apart)."""
    cumulative = [
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == f"{name}_bucket"
    ]
    return [now - before for before, now in zip([0.0, *cumulative], cumulative, strict=False)]


def test_a_childs_bounds_are_its_buckets_ascending_with_inf_last() -> None:
    child = histogram().labels("demo")
    assert isinstance(child._upper_bounds, list)
    assert bucket_bounds(child) == [*map(float, BOUNDS), math.inf]


def test_a_child_has_one_value_per_bound_and_a_sum_each_with_inc() -> None:
    child = histogram().labels("demo")
    assert len(child._buckets) == len(bucket_bounds(child))
    for value in [*child._buckets, child._sum]:
        assert callable(value.inc)
        assert callable(value.get)


def test_the_multiprocess_values_have_inc_too() -> None:
    """A worker of several keeps its values in files (PROMETHEUS_MULTIPROC_DIR)."""
    assert callable(values.MultiProcessValue().inc)


@given(st.floats(min_value=0, max_value=120, allow_nan=False) | st.sampled_from(BOUNDS))
def test_observe_counts_a_value_in_one_bucket_the_first_whose_bound_is_not_below_it(
    value: float,
) -> None:
    metric = histogram()
    child = metric.labels("demo")
    child.observe(value)
    counts = [bucket.get() for bucket in child._buckets]
    first = next(index for index, bound in enumerate(bucket_bounds(child)) if value <= bound)
    assert counts == [1.0 if index == first else 0.0 for index in range(len(counts))]
    assert child._sum.get() == value


@given(st.lists(st.floats(min_value=0, max_value=120, allow_nan=False), max_size=30))
def test_adding_observations_is_observing_each_value(seconds: list[float]) -> None:
    registry = CollectorRegistry()
    ours = Histogram("ours", "", buckets=BOUNDS, registry=registry)
    theirs = Histogram("theirs", "", buckets=BOUNDS, registry=registry)
    bounds = bucket_bounds(ours)
    counts = [0] * len(bounds)
    for value in seconds:
        counts[next(index for index, bound in enumerate(bounds) if value <= bound)] += 1
        theirs.observe(value)
    add_observations(ours, counts, sum(seconds))
    assert buckets_of(registry, "ours") == buckets_of(registry, "theirs")
    assert registry.get_sample_value("ours_sum") == pytest.approx(
        registry.get_sample_value("theirs_sum")
    )


def _multiprocess_value(pid: int, kind: str, mode: str) -> None:
    """What a process's series writes in a multiprocess directory (PROMETHEUS_MULTIPROC_DIR)."""
    value_class = values.MultiProcessValue(lambda: pid)  # type: ignore[no-untyped-call]
    value_class(kind, "neu_gateway_x", "neu_gateway_x", (), (), "", multiprocess_mode=mode).set(1)


@pytest.mark.parametrize("mode", ["livesum", "livemax", "livemostrecent", "livemin"])
def test_a_live_gauges_file_names_its_process_until_it_is_marked_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv(MULTIPROCESS_DIR_ENV, str(tmp_path))
    _multiprocess_value(4242, "gauge", mode)
    _multiprocess_value(4343, "gauge", "all")  # kept after its process: not a live one
    _multiprocess_value(4444, "counter", "")
    assert live_pids(tmp_path) == [4242]
    multiprocess.mark_process_dead(4242, str(tmp_path))  # type: ignore[no-untyped-call]
    assert live_pids(tmp_path) == []


def test_live_pids_skip_files_of_other_shapes(tmp_path: Path) -> None:
    for name in ["gauge_livesum_12.db", "gauge_livemax_7.db", "gauge_livesum_x.db", "other.db"]:
        (tmp_path / name).write_bytes(b"")
    assert live_pids(tmp_path) == [7, 12]
    assert os.getpid() not in live_pids(tmp_path)
