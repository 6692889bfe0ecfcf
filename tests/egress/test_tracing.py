"""The trace of a call: the caller's W3C `traceparent` goes to the platform, or one the
gateway starts; the access line names the same trace id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.core.tracing import read
from tests.support.access_lines import AccessLines, capturing
from tests.support.paths import ECHO
from tests.support.platform_double import PlatformDouble

Client = TestClient[Any, Any]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.fixture
def access_lines() -> Iterator[AccessLines]:
    with capturing() as lines:
        yield lines


async def test_a_callers_traceparent_and_tracestate_go_upstream_and_its_trace_id_is_logged(
    gateway: Client, platform: PlatformDouble, access_lines: AccessLines
) -> None:
    response = await gateway.get(
        ECHO, headers={"traceparent": TRACEPARENT, "tracestate": "vendor=opaque"}
    )
    assert response.status == 200
    assert platform.last.headers["traceparent"] == TRACEPARENT
    assert platform.last.headers["tracestate"] == "vendor=opaque"
    line = await access_lines.next_line()
    assert line["trace_id"] == TRACE_ID


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none given"),
        pytest.param({"traceparent": "00-not-a-trace-01", "tracestate": "v=1"}, id="malformed"),
        pytest.param(
            {"traceparent": f"00-{'0' * 32}-b7ad6b7169203331-01", "tracestate": "v=1"},
            id="all-zero trace id",
        ),
    ],
)
async def test_without_a_valid_traceparent_one_is_started_sent_upstream_and_logged(
    gateway: Client, platform: PlatformDouble, access_lines: AccessLines, headers: dict[str, str]
) -> None:
    response = await gateway.get(ECHO, headers=headers)
    assert response.status == 200
    sent = platform.last.headers["traceparent"]
    trace = read(sent)
    assert trace is not None, sent
    assert sent.startswith("00-")
    assert sent.endswith("-00")
    assert "tracestate" not in platform.last.headers, "it belonged to the refused traceparent"
    line = await access_lines.next_line()
    assert line["trace_id"] == trace.trace_id


async def test_two_traceparents_are_as_none(
    gateway: Client, platform: PlatformDouble, access_lines: AccessLines
) -> None:
    other = f"00-{'1' * 32}-b7ad6b7169203331-01"
    await gateway.get(ECHO, headers=[("traceparent", TRACEPARENT), ("traceparent", other)])
    sent = platform.last.headers["traceparent"]
    assert TRACE_ID not in sent
    assert "1" * 32 not in sent
    assert (await access_lines.next_line())["trace_id"] == sent.split("-")[1]


async def test_each_request_starts_its_own_trace(
    gateway: Client, platform: PlatformDouble, access_lines: AccessLines
) -> None:
    for _ in range(3):
        await gateway.get(ECHO)
    ids = {(await access_lines.next_line())["trace_id"] for _ in range(3)}
    assert len(ids) == 3


async def test_the_access_line_names_the_peer_and_the_user_agent(
    gateway: Client, access_lines: AccessLines
) -> None:
    await gateway.get(ECHO, headers={"User-Agent": "orders/2.1 (python-requests)"})
    line = await access_lines.next_line()
    assert line["remote"] == "127.0.0.1"
    assert line["user_agent"] == "orders/2.1 (python-requests)"
