"""W3C Trace Context (https://www.w3.org/TR/trace-context/, level 1): the trace a request
belongs to, read from the caller's `traceparent`, or started here when none came.

`traceparent` is `version-traceid-parentid-flags`: 2, 32, 16 and 2 lowercase hex digits. A
malformed one is treated as absent (section 3.2: the receiver restarts the trace), and so is
its `tracestate`, which means nothing without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A later version may append fields after a `-` (section 3.2.4); version ff is invalid.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
# Not sampled: the gateway records no spans, so it does not claim to have recorded any.
STARTED_FLAGS = "00"


@dataclass(frozen=True, slots=True)
class Trace:
    """A request's trace: `traceparent` as sent upstream, and whether the caller gave it
    (then its `tracestate` goes along too)."""

    traceparent: str
    trace_id: str
    given: bool


def read(value: str) -> Trace | None:
    """The trace of a caller's `traceparent`, or None when it is malformed.

    A valid one goes on as version 00 (the one version this reads), with the caller's ids and
    flags: the gateway is no span of its own.
    """
    found = _TRACEPARENT.fullmatch(value)
    if found is None:
        return None
    version, trace_id, parent_id, flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
        return None
    return Trace(f"00-{trace_id}-{parent_id}-{flags}", trace_id, given=True)


def started(trace_bits: int, parent_bits: int) -> Trace:
    """A new trace from random bits: 128 for its trace id, 64 for the parent id. An all-zero
    id is invalid, so a zero draw counts as 1."""
    trace_id = f"{trace_bits % (1 << 128) or 1:032x}"
    parent_id = f"{parent_bits % (1 << 64) or 1:016x}"
    return Trace(f"00-{trace_id}-{parent_id}-{STARTED_FLAGS}", trace_id, given=False)
