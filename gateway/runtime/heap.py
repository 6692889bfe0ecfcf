"""The garbage collector's settings for a process that serves requests.

CPython's defaults suit a program that builds up data: a pass over the young objects every 700
net allocations, and now and then a full pass over every object there is. A gateway's objects
live for one request and are freed by reference counting as it ends: a request leaves no cycle
behind, nor does a connection when it closes (tests/runtime/test_heap.py holds both to that). What
does wait for the collector is small and holds no bodies: aiohttp's route for a 404 refers to
itself, and a client that leaves while the rest of its refused body is being read away leaves
its request in a cycle with the cancellation's traceback. Measured under load (wrk, 64
connections), the defaults ran a young pass every 30 or so requests, each walking every
request in flight, and a full pass over the 55,000 objects of the loaded modules every 4,000:
about 9 µs of a GET's 125 and 15 of a POST's 140, for next to no garbage found.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

# Net allocations between two passes over the young objects. Requests in flight hold a few
# thousand objects at most, so passes are rare; what little garbage there is waits at most
# this many allocations.
YOUNG_THRESHOLD = 10_000


@dataclass(frozen=True)
class Settled:
    frozen: int
    thresholds: tuple[int, int, int]


def settle() -> Settled:
    """Takes what the process built to start (modules, config, app) out of the collector's
    view, and makes young passes rare. Called once the process is ready to serve."""
    gc.collect()
    # Frozen objects are never walked again; they stay as long as the process does, as they
    # would anyway.
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
    return Settled(gc.get_freeze_count(), gc.get_threshold())
