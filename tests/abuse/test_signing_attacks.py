"""A hostile client against the signed deliveries' receiving side, the sandbox standing in for
an app's service: it runs in the gateway's process, on its event loop, so what it is made to
compute or keep is the gateway's time and memory."""

from __future__ import annotations

import time

import pytest

from gateway.sandbox.receiver import MAX_DELIVERY_BYTES, SHOWN_BODY_CHARS
from tests.abuse.conftest import Answer, Target, exchange, request_bytes

# The module's tests share a gateway, on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

DELIVERIES = "/sandbox/deliveries"
# As many candidates as the sandbox's longest header line holds (64 KiB).
FORGED = " ".join(f"v1,{index}" for index in range(8000))


def stamped(signatures: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "webhook-id": "T1:2",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": signatures,
    }


async def deliver(target: Target, body: bytes, headers: dict[str, str]) -> Answer:
    answer = await exchange(target.sandbox_port, request_bytes("POST", DELIVERIES, body, headers))
    assert answer is not None, "the sandbox closed without an answer"
    return answer


async def test_thousands_of_forged_signatures_over_a_large_body_do_not_stall_the_gateway(
    target: Target,
) -> None:
    """Each candidate signature cost an HMAC of the whole body: 8000 over 1 MiB were ~6 s of
    CPU on the event loop the gateway's listeners answer on, for one request."""
    body = b"x" * MAX_DELIVERY_BYTES
    async with target.under_abuse(max_growth_mb=64):
        for _ in range(3):
            answer = await deliver(target, body, stamped(FORGED))
            assert answer.status == 400
            assert "no signature matches" in answer.body["responseHeader"]["msg"]


async def test_large_deliveries_kept_by_the_sandbox_do_not_swell_the_gateway(
    target: Target,
) -> None:
    """A 1 MiB JSON array of empty arrays, parsed whole for the listing, was ~20 MB of
    objects; the sandbox keeps 100 deliveries, refused ones too."""
    body = b"[" + b",".join([b"[]"] * (MAX_DELIVERY_BYTES // 3 - 1)) + b"]"
    assert len(body) <= MAX_DELIVERY_BYTES
    async with target.under_abuse(max_growth_mb=64):
        for _ in range(10):
            answer = await deliver(target, body, stamped("v1,forged"))
            assert answer.status == 400
        listing = await exchange(target.sandbox_port, request_bytes("GET", DELIVERIES))
    assert listing is not None
    kept = listing.body["response"]
    assert kept[-1]["body"] == body[:SHOWN_BODY_CHARS].decode()


async def test_a_body_nested_too_deep_to_parse_is_answered_in_the_envelope(
    target: Target,
) -> None:
    """json.loads raises RecursionError on deep nesting, which the receiver did not expect:
    aiohttp's plain-text 500."""
    deep = b"[" * 2048 + b"]" * 2048
    answer = await deliver(target, deep, stamped("v1,forged"))
    assert answer.status == 400
    assert answer.body["responseHeader"]["status"] == 400
