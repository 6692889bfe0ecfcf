"""Deliveries signed as Standard Webhooks sign, checked by the convention's own verifier (the
`standardwebhooks` package), not by the gateway's code: real deliveries from the worker over a
real outbox to a real service on loopback."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.callbacks.delivery import (
    DeliveryPolicy,
    DeliveryWorker,
    Destination,
    refusal_reason,
)
from gateway.callbacks.outbox import SqliteOutbox
from gateway.core.clock import Clock, SystemClock
from gateway.core.webhooks import signing_key
from gateway.sandbox.server import create_sandbox_app
from tests.docs.pages import page, section
from tests.support.clock import MutableClock
from tests.support.receiver import CallbackReceiver
from tests.support.waiting import until_answers

SECRET = "whsec_" + base64.b64encode(b"the-orders-service-signing-key!!").decode()
PREVIOUS = "whsec_" + base64.b64encode(b"the-signing-key-before-rotation!").decode()
STRANGER = "whsec_" + base64.b64encode(b"a-key-the-gateway-never-had-0000").decode()
PAYLOAD = b'{"tradeNo": "T1", "amount": 1999, "currency": "SAR", "transactionStatus": 2}'
SETTINGS = DeliveryPolicy(backoff_s=0.05, max_backoff_s=0.1, max_attempts=5, timeout_s=5)


async def delivered(
    tmp_path: Path,
    receiver: CallbackReceiver,
    secrets: tuple[str, ...] = (SECRET,),
    clock: Clock | None = None,
) -> tuple[dict[str, str], bytes]:
    """The headers and body of the one delivery the worker made, once the service took it."""
    clock = clock or SystemClock()
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    await outbox.add("demo", "T1", 2, PAYLOAD, clock.now_ms() / 1000)
    destination = Destination(receiver.url, tuple(signing_key(s) for s in secrets))
    worker = DeliveryWorker(outbox, {"demo": destination}, SETTINGS, clock)
    worker.start()
    try:
        await receiver.wait_accepted(1)
    finally:
        await worker.stop()
        await outbox.close()
    return receiver.headers[-1], receiver.bodies[-1]


async def test_a_delivery_verifies_with_standard_webhooks(
    tmp_path: Path, receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    headers, body = await delivered(tmp_path, receiver)
    assert body == PAYLOAD, "the bytes signed are the bytes sent"
    assert Webhook(SECRET).verify(body, headers) == {
        "tradeNo": "T1",
        "amount": 1999,
        "currency": "SAR",
        "transactionStatus": 2,
    }
    assert headers["webhook-id"] == headers["Idempotency-Key"] == "T1:2"
    assert SECRET.removeprefix("whsec_") not in caplog.text


async def test_a_wrong_secret_and_a_changed_body_are_refused_by_it(
    tmp_path: Path, receiver: CallbackReceiver
) -> None:
    headers, body = await delivered(tmp_path, receiver)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(STRANGER).verify(body, headers)
    paid_less = body.replace(b"1999", b"1")
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(paid_less, headers)
    replayed_as_another_trade = {**headers, "webhook-id": "T2:2"}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(body, replayed_as_another_trade)


async def test_a_delivery_signed_beyond_the_tolerance_is_refused_by_it(
    tmp_path: Path, receiver: CallbackReceiver
) -> None:
    # A delivery recorded six minutes ago and sent again now: its timestamp gives it away.
    clock = MutableClock()
    clock.now -= 6 * 60 * 1000
    headers, body = await delivered(tmp_path, receiver, clock=clock)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(body, headers)


async def test_during_a_rotation_either_secret_verifies(
    tmp_path: Path, receiver: CallbackReceiver
) -> None:
    headers, body = await delivered(tmp_path, receiver, secrets=(SECRET, PREVIOUS))
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(body, headers)
    Webhook(PREVIOUS).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(STRANGER).verify(body, headers)


async def test_each_attempt_is_signed_at_its_own_time(
    tmp_path: Path, receiver: CallbackReceiver
) -> None:
    receiver.fail_first = 1
    clock = MutableClock()
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    await outbox.add("demo", "T1", 2, PAYLOAD, clock.now_ms() / 1000)
    destination = Destination(receiver.url, (signing_key(SECRET),))
    worker = DeliveryWorker(outbox, {"demo": destination}, SETTINGS, clock)
    worker.start()
    try:
        await receiver.wait_for(1)
        clock.advance(30)
        await receiver.wait_accepted(1)
    finally:
        await worker.stop()
        await outbox.close()
    first, retry = receiver.headers[0], receiver.headers[-1]
    assert first["webhook-id"] == retry["webhook-id"] == "T1:2"
    assert int(retry["webhook-timestamp"]) >= int(first["webhook-timestamp"]) + 30
    assert first["webhook-signature"] != retry["webhook-signature"]
    Webhook(SECRET).verify(receiver.bodies[-1], retry)


async def test_an_app_without_a_signing_secret_delivers_unsigned(
    tmp_path: Path, receiver: CallbackReceiver
) -> None:
    headers, _ = await delivered(tmp_path, receiver, secrets=())
    assert not [name for name in headers if name.lower().startswith("webhook-")]
    assert headers["Idempotency-Key"] == "T1:2"


def readme_receiver() -> Callable[[str, dict[str, str], bytes], bool]:
    """The README's receiving side, as a reader copies it."""
    text = section(page("README.md"), "## Payment callbacks, delivered signed")
    match = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert match is not None
    namespace: dict[str, Any] = {}
    exec(match.group(1), namespace)  # noqa: S102 - the README's own snippet, under test
    check: Callable[[str, dict[str, str], bytes], bool] = namespace["from_the_gateway"]
    return check


async def test_the_readmes_receiving_side_accepts_a_delivery_and_nothing_else(
    tmp_path: Path, receiver: CallbackReceiver
) -> None:
    from_the_gateway = readme_receiver()
    headers, body = await delivered(tmp_path, receiver, secrets=(SECRET, PREVIOUS))
    # As a server hands them over: names in lower case.
    headers = {name.lower(): value for name, value in headers.items()}
    assert from_the_gateway(SECRET, headers, body)
    assert from_the_gateway(PREVIOUS, headers, body)
    assert not from_the_gateway(STRANGER, headers, body)
    assert not from_the_gateway(SECRET, headers, body.replace(b"1999", b"1"))
    stale = str(int(headers["webhook-timestamp"]) - 301)
    assert not from_the_gateway(SECRET, {**headers, "webhook-timestamp": stale}, body)
    assert not from_the_gateway(SECRET, {**headers, "webhook-timestamp": "-1"}, body)
    assert not from_the_gateway(SECRET, {**headers, "webhook-signature": "v1,é"}, body)
    assert not from_the_gateway(SECRET, {}, body)


@pytest.mark.parametrize(
    "trade_no",
    [
        pytest.param("T.1", id="a dot, the signed string's separator"),
        pytest.param("T 1", id="a space inside"),
        pytest.param("T\t1", id="a tab inside"),
        pytest.param("T€1", id="non-ASCII, sent as UTF-8"),
    ],
)
async def test_an_odd_trade_no_arrives_as_signed(
    tmp_path: Path, receiver: CallbackReceiver, trade_no: str
) -> None:
    clock = SystemClock()
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    await outbox.add("demo", trade_no, 2, PAYLOAD, clock.now_ms() / 1000)
    worker = DeliveryWorker(
        outbox, {"demo": Destination(receiver.url, (signing_key(SECRET),))}, SETTINGS, clock
    )
    worker.start()
    try:
        await receiver.wait_accepted(1)
    finally:
        await worker.stop()
        await outbox.close()
    [headers] = receiver.headers
    assert headers["webhook-id"] == f"{trade_no}:2"
    Webhook(SECRET).verify(receiver.bodies[-1], headers)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"", "", id="nothing"),
        pytest.param(b"bad signature\nsecond line", ": bad signature", id="a line of text"),
        pytest.param(
            b'{"responseHeader": {"status": 400, "msg": "delivery refused: too old"}}',
            ": delivery refused: too old",
            id="the platform's envelope",
        ),
        pytest.param(b'{"error": "invalid signature"}', ": invalid signature", id="error"),
        pytest.param(b'{"detail": 1}', "", id="JSON that says nothing"),
        pytest.param(b"[" * 3000 + b"]" * 3000, ": " + "[" * 160, id="nested too deep"),
        pytest.param(b"refused\x1b[31m red", ": refused\\x1b[31m red", id="a control character"),
        pytest.param(b"x" * 5000, ": " + "x" * 160, id="long"),
    ],
)
def test_a_refusals_reason_is_its_first_line_or_its_envelopes_msg(body: bytes, reason: str) -> None:
    assert refusal_reason(body) == reason


async def test_a_service_that_refuses_says_why_in_the_outbox(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    # The sandbox standing in for the service knows the demo secret, not this one.
    sandbox = await aiohttp_client(create_sandbox_app({}))
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    clock = SystemClock()
    await outbox.add("demo", "T1", 2, PAYLOAD, clock.now_ms() / 1000)
    url = str(sandbox.make_url("/sandbox/deliveries"))
    worker = DeliveryWorker(
        outbox, {"demo": Destination(url, (signing_key(SECRET),))}, SETTINGS, clock
    )
    worker.start()
    try:

        async def failed_once() -> bool:
            return bool([d for d in await outbox.listing(("pending",)) if d.attempts])

        await until_answers(failed_once)
    finally:
        await worker.stop()
    [pending] = await outbox.listing(("pending",))
    await outbox.close()
    assert pending.last_error.startswith("HTTP 400: delivery refused: no signature matches")
