"""W3C Trace Context: which `traceparent` a caller may give, and the one started instead."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.tracing import STARTED_FLAGS, read, started

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SPEC_EXAMPLE = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        pytest.param(SPEC_EXAMPLE, SPEC_EXAMPLE, id="the spec's example"),
        pytest.param(
            f"00-{TRACE_ID}-{PARENT_ID}-00", f"00-{TRACE_ID}-{PARENT_ID}-00", id="unsampled"
        ),
        pytest.param(
            f"01-{TRACE_ID}-{PARENT_ID}-01-more-fields",
            SPEC_EXAMPLE,
            id="a later version with more fields, read as 00",
        ),
        pytest.param(f"cc-{TRACE_ID}-{PARENT_ID}-09", f"00-{TRACE_ID}-{PARENT_ID}-09", id="cc"),
    ],
)
def test_a_valid_traceparent_is_kept(value: str, sent: str) -> None:
    trace = read(value)
    assert trace is not None
    assert (trace.traceparent, trace.trace_id, trace.given) == (sent, TRACE_ID, True)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param(SPEC_EXAMPLE.upper(), id="uppercase hex"),
        pytest.param(f"ff-{TRACE_ID}-{PARENT_ID}-01", id="version ff"),
        pytest.param(f"00-{'0' * 32}-{PARENT_ID}-01", id="all-zero trace id"),
        pytest.param(f"00-{TRACE_ID}-{'0' * 16}-01", id="all-zero parent id"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-01-extra", id="version 00 with more fields"),
        pytest.param(f"01-{TRACE_ID}-{PARENT_ID}-01extra", id="a later version without a dash"),
        pytest.param(f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01", id="short trace id"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-1", id="short flags"),
        pytest.param(f" {SPEC_EXAMPLE}", id="a leading space"),
        pytest.param(f"00_{TRACE_ID}_{PARENT_ID}_01", id="other separators"),
        pytest.param(f"00-{TRACE_ID}-{PARENT_ID}-0g", id="not hex"),
    ],
)
def test_a_malformed_traceparent_is_none(value: str) -> None:
    assert read(value) is None


@given(
    st.integers(min_value=0, max_value=2**128 - 1), st.integers(min_value=0, max_value=2**64 - 1)
)
def test_a_started_trace_is_a_valid_version_00_traceparent(
    trace_bits: int, parent_bits: int
) -> None:
    trace = started(trace_bits, parent_bits)
    assert not trace.given
    version, trace_id, _parent_id, flags = trace.traceparent.split("-")
    assert (version, flags) == ("00", STARTED_FLAGS)
    assert trace_id == trace.trace_id
    assert read(trace.traceparent) == trace.__class__(trace.traceparent, trace_id, given=True)
