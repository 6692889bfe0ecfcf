"""prometheus-client's internals, behind one door: the histogram's the tallies write through,
and the multiprocess files' names.

A histogram child's `observe()` takes a lock and walks its buckets for every value; the tallies
(`tallies`) add many values up and write them at once, which prometheus-client has no public
call for. Every private name of prometheus-client's that the gateway uses is here:

- `Histogram._upper_bounds`: the child's bucket bounds, ascending, `+Inf` last;
- `Histogram._buckets`: one value per bound, each holding the count of values that fell in
  that bucket alone (not cumulative: the exposition adds them up);
- `Histogram._sum`: the sum of the values observed.

Each value (`values.ValueClass`, or its multiprocess kind) has `inc(amount)`.

And one of its file layout: in multiprocess mode each process keeps its `live*` gauges in
`gauge_<mode>_<pid>.db`, removed when it is marked dead (`live_pids`, for `processes`).
tests/metrics/test_prometheus.py holds them to that, so an upgrade that changes one fails there.
"""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import Histogram


def bucket_bounds(child: Histogram) -> list[float]:
    """A histogram child's bucket bounds, ascending, `+Inf` last: `observe(value)` counts the
    value in the first bucket whose bound is not below it."""
    bounds: list[float] = child._upper_bounds
    return bounds


def add_observations(child: Histogram, counts: list[int], total: float) -> None:
    """Adds to the child what observing values would: `counts[i]` values in bucket i (by
    `bucket_bounds`), summing to `total`."""
    buckets = child._buckets
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
    child._sum.inc(total)


# A multiprocess gauge file of a `live*` mode: `gauge_<mode>_<pid>.db`, removed by
# mark_process_dead once its process has ended (the supervisor calls it for each worker).
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]*_(\d+)\.db")


def live_pids(directory: Path) -> list[int]:
    """The processes with live gauges in a multiprocess directory: the running workers
    (each sets neu_gateway_build_info, a live gauge, as it starts)."""
    found = {
        int(match[1])
        for path in directory.glob("gauge_live*_*.db")
        if (match := _LIVE_GAUGE_FILE.fullmatch(path.name))
    }
    return sorted(found)
