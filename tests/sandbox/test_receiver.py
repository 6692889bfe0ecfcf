"""The sandbox standing in for an app's service: deliveries verified as a service verifies
them, each kept with its verdict, a refusal answered 400 with the reason."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from multidict import CIMultiDict

from gateway.core.secrets import DEMO_SIGNING_SECRET
from gateway.core.webhooks import signed_headers, signing_key
from gateway.sandbox.receiver import KEPT_DELIVERIES, MAX_DELIVERY_BYTES, SHOWN_BODY_CHARS
from gateway.sandbox.server import set_signing_secrets
from tests.sandbox.conftest import Client, header
from tests.support.clock import MutableClock

BODY = json.dumps({"tradeNo": "T1", "transactionStatus": 2}).encode()
APP_SECRET = "whsec_" + base64.b64encode(b"an-app-of-this-sandbox-signs-so").decode()


def signed(secret: str, clock: MutableClock, body: bytes = BODY, at_s: int = 0) -> dict[str, str]:
    when = clock.now_ms() // 1000 + at_s
    headers = signed_headers([signing_key(secret)], "T1:2", when, body)
    return {**headers, "Idempotency-Key": "T1:2", "Content-Type": "application/json"}


async def received(sandbox: Client) -> list[dict[str, Any]]:
    answer = await sandbox.get("/sandbox/deliveries")
    listing: list[dict[str, Any]] = (await answer.json())["response"]
    return listing


async def test_a_delivery_signed_with_the_demo_secret_is_verified(
    sandbox: Client, clock: MutableClock
) -> None:
    answer = await sandbox.post(
        "/sandbox/deliveries", data=BODY, headers=signed(DEMO_SIGNING_SECRET, clock)
    )
    assert answer.status == 200
    assert (await answer.json())["response"] == {
        "verified": True,
        "webhookId": "T1:2",
        "repeat": False,
    }
    again = await sandbox.post(
        "/sandbox/deliveries", data=BODY, headers=signed(DEMO_SIGNING_SECRET, clock)
    )
    assert (await again.json())["response"]["repeat"] is True
    [first, second] = await received(sandbox)
    assert first["verified"] is True
    assert first["body"] == {"tradeNo": "T1", "transactionStatus": 2}
    assert first["idempotencyKey"] == "T1:2"
    assert second["repeat"] is True


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        pytest.param(lambda h, c: {}, "no webhook-id, webhook-timestamp", id="unsigned"),
        pytest.param(
            lambda h, c: signed(APP_SECRET, c), "no signature matches", id="a secret unknown"
        ),
        pytest.param(
            lambda h, c: {**h, "webhook-id": "T9:2"}, "no signature matches", id="another id"
        ),
        pytest.param(lambda h, c: signed(DEMO_SIGNING_SECRET, c, at_s=-301), "s old", id="too old"),
    ],
)
async def test_a_delivery_that_fails_is_refused_400_with_why(
    sandbox: Client, clock: MutableClock, tamper: Any, reason: str
) -> None:
    headers = tamper(signed(DEMO_SIGNING_SECRET, clock), clock)
    answer = await sandbox.post("/sandbox/deliveries", data=BODY, headers=headers)
    assert answer.status == 400
    status, msg = header(await answer.json())
    assert status == 400
    assert msg.startswith("delivery refused: ")
    assert reason in msg
    [kept] = await received(sandbox)
    assert kept["verified"] is False
    assert reason in kept["reason"]


async def test_a_changed_body_is_refused(sandbox: Client, clock: MutableClock) -> None:
    answer = await sandbox.post(
        "/sandbox/deliveries", data=BODY + b" ", headers=signed(DEMO_SIGNING_SECRET, clock)
    )
    assert answer.status == 400


async def test_it_verifies_with_the_signing_secrets_it_is_told(
    sandbox: Client, clock: MutableClock
) -> None:
    set_signing_secrets(sandbox.server.app, [APP_SECRET, "not-a-whsec-secret"])
    for secret in (APP_SECRET, DEMO_SIGNING_SECRET):
        answer = await sandbox.post("/sandbox/deliveries", data=BODY, headers=signed(secret, clock))
        assert answer.status == 200
    set_signing_secrets(sandbox.server.app, [])
    answer = await sandbox.post("/sandbox/deliveries", data=BODY, headers=signed(APP_SECRET, clock))
    assert answer.status == 400


async def test_a_reset_forgets_them_and_only_the_latest_are_kept(
    sandbox: Client, clock: MutableClock
) -> None:
    for _ in range(KEPT_DELIVERIES + 5):
        await sandbox.post("/sandbox/deliveries", data=b"x")
    assert len(await received(sandbox)) == KEPT_DELIVERIES
    await sandbox.post("/sandbox/reset")
    assert await received(sandbox) == []


async def test_a_body_far_larger_than_a_delivery_is_refused_unread(sandbox: Client) -> None:
    answer = await sandbox.post(
        "/sandbox/deliveries", data=io.BytesIO(b"{" * (MAX_DELIVERY_BYTES + 1))
    )
    assert answer.status == 413
    assert await received(sandbox) == []
    assert (await sandbox.get("/sandbox/deliveries")).status == 200


@pytest.mark.parametrize("depth", [SHOWN_BODY_CHARS // 2, 100_000], ids=["short", "long"])
async def test_a_body_nested_too_deep_to_parse_is_kept_as_text(
    sandbox: Client, clock: MutableClock, depth: int
) -> None:
    deep = b"[" * depth + b"]" * depth
    answer = await sandbox.post(
        "/sandbox/deliveries", data=deep, headers=signed(DEMO_SIGNING_SECRET, clock, body=deep)
    )
    assert answer.status == 200
    [kept] = await received(sandbox)
    assert kept["verified"] is True
    assert kept["body"] == deep[:SHOWN_BODY_CHARS].decode()


async def test_what_is_kept_of_a_large_delivery_is_cut(
    sandbox: Client, clock: MutableClock
) -> None:
    # Parsed whole, a 1 MiB array of empty arrays is ~20 MB of objects: the 100 kept were
    # gigabytes, and the listing hundreds of megabytes.
    large = b"[" + b",".join([b"[]"] * 300_000) + b"]"
    for _ in range(3):
        answer = await sandbox.post(
            "/sandbox/deliveries",
            data=large,
            headers=signed(DEMO_SIGNING_SECRET, clock, body=large),
        )
        assert answer.status == 200
    listing = await (await sandbox.get("/sandbox/deliveries")).read()
    assert len(listing) < 3 * 2 * SHOWN_BODY_CHARS
    assert (await received(sandbox))[0]["body"] == large[:SHOWN_BODY_CHARS].decode()


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_a_signature_header_given_twice_is_refused(
    sandbox: Client, clock: MutableClock, name: str
) -> None:
    # Which of the two a service reads depends on its framework (the first, the last, both
    # joined by a comma): a delivery so framed is ambiguous, whichever verifies.
    headers = CIMultiDict(signed(DEMO_SIGNING_SECRET, clock))
    headers.add(name, headers[name])
    answer = await sandbox.post("/sandbox/deliveries", data=BODY, headers=headers)
    assert answer.status == 400
    status, msg = header(await answer.json())
    assert status == 400
    assert msg == f"delivery refused: more than one {name} header"
    [kept] = await received(sandbox)
    assert kept["verified"] is False
