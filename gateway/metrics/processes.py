"""`process_*` (memory, CPU seconds, open and max fds, start time) of every worker of a
`--workers` gateway, one series per worker labelled `pid`.

prometheus-client's ProcessCollector reads one process's /proc; in multiprocess mode nothing
adds the workers up, and a sum would mean nothing for the start time or the fd limit. So the
scraped worker reads each live worker's /proc by the pid of its multiprocess files: every
worker's figures, fresh, whichever worker the scrape reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from gateway.metrics.prometheus import live_pids

PID_LABEL = "pid"


class WorkerProcesses(Collector):
    """Each live worker's process_* series, labelled with its pid."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for pid in live_pids(self._directory):
            one = ProcessCollector(pid=_always(pid), registry=None)
            for family in one.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for sample in family.samples:
                    merged.add_sample(sample.name, {PID_LABEL: str(pid)}, sample.value)
        return list(families.values())


def _always(pid: int) -> Callable[[], int]:
    return lambda: pid
