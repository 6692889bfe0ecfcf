"""Many requests at once from one client: thousands pipelined in one write, and a caller far
past its rate limit."""

from __future__ import annotations

import asyncio

import pytest

from tests.abuse.conftest import StartTarget, Target
from tests.support.rawhttp import statuses, until_closed

# The module's tests share a gateway, on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
CALLER_TOKEN = "orders-token-0123456789abcdef"


async def test_thousands_of_pipelined_requests_ahead_of_garbage_are_answered_in_order(
    target: Target,
) -> None:
    """4000 requests in one write, then a malformed one: each answered once, in order, then
    the 400, in bounded memory, while both listeners keep answering."""
    flood = HEALTH * 4000 + b"G\x01T / HTTP/1.1\r\n\r\n" + HEALTH
    async with target.under_abuse(max_growth_mb=24):
        answers = await asyncio.gather(
            *(until_closed(target.port, flood, timeout_s=30) for _ in range(4))
        )
    for answer in answers:
        assert statuses(answer) == [200] * 4000 + [400]


async def test_a_body_of_blank_lines_is_read_whole_not_split_into_requests(
    target: Target,
) -> None:
    """8 MB of CRLFs as a form body: one request (refused for its size), not a million."""
    body = b"\r\n" * 4_000_000
    head = (
        b"POST /neuopenapi/sandbox/echo HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    async with target.under_abuse(max_growth_mb=24):
        answers = await asyncio.gather(
            *(until_closed(target.port, head + body, timeout_s=30) for _ in range(4))
        )
    for answer in answers:
        assert statuses(answer) == [413]


async def test_a_caller_far_past_its_rate_is_answered_429_at_once(
    start_target: StartTarget,
) -> None:
    target = await start_target(
        env={"ORDERS_TOKEN": CALLER_TOKEN},
        callers=(
            "{orders: {token_env: ORDERS_TOKEN, apps: [demo], allow: ['* /neuopenapi/*'], "
            "rate_limit: {requests_per_s: 1, burst: 5}}}"
        ),
    )
    request = (
        b"GET /neuopenapi/sandbox/echo?a=1 HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + CALLER_TOKEN.encode() + b"\r\n\r\n"
    )
    async with target.under_abuse(max_growth_mb=24):
        answers = await asyncio.gather(
            *(
                until_closed(
                    target.port, request * 500 + HEALTH[:-2] + b"Connection: close\r\n\r\n"
                )
                for _ in range(8)
            )
        )
    answered = [status for answer in answers for status in statuses(answer)]
    # 5 a burst, and at most a few more as the bucket refills while the flood is answered.
    assert 5 <= answered.count(200) - 8 <= 5 + 30
    assert answered.count(429) >= 8 * 500 - 35
    assert len(answered) == 8 * 501
