"""Standard Webhooks signatures: what the gateway signs, Standard Webhooks' own verifier
accepts; what it refuses, ours refuses too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.core import webhooks
from gateway.core.secrets import DEMO_SIGNING_SECRET
from gateway.core.webhooks import (
    MAX_KEY_BYTES,
    MIN_KEY_BYTES,
    SigningKey,
    SigningSecretError,
    signature,
    signed_headers,
    signing_key,
    verify,
)

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
KEY, OTHER_KEY = signing_key(SECRET), signing_key(OTHER)
# The specification's own example (standard-webhooks/spec, "Signature scheme").
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80)
bodies = st.binary(max_size=2048)
keys = st.binary(min_size=MIN_KEY_BYTES, max_size=MAX_KEY_BYTES)


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def test_the_specifications_example() -> None:
    assert signature(signing_key(SPEC_SECRET), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_demo_secret_is_one_and_prints_masked() -> None:
    key = signing_key(DEMO_SIGNING_SECRET)
    assert key.key == b"demo-signing-key-public-on-purpose"
    assert "demo" not in repr(key)
    assert "demo" not in str(key)


@given(key=keys, message_id=ids, body=bodies)
@example(key=bytes(24), message_id="cf6c814f886242ffa741a809924a9f41:2", body=b'{"a": 1}')
def test_what_is_signed_verifies_with_standard_webhooks(
    key: bytes, message_id: str, body: bytes
) -> None:
    now = int(time.time())
    headers = signed_headers([signing_key(whsec(key))], message_id, now, body)
    assert Webhook(whsec(key)).verify(body, headers, json_parse=False) is None
    assert verify([signing_key(whsec(key))], headers, body, now).accepted


@given(body=bodies, changed=bodies)
def test_a_changed_body_is_refused_by_both(body: bytes, changed: bytes) -> None:
    if body == changed:
        return
    now = int(time.time())
    headers = signed_headers([KEY], "T1:2", now, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(changed, headers)
    assert not verify([KEY], headers, changed, now).accepted


def test_during_a_rotation_either_secret_verifies() -> None:
    now = int(time.time())
    headers = signed_headers([KEY, OTHER_KEY], "T1:2", now, b"{}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OTHER):
        Webhook(secret).verify(b"{}", headers)
    assert verify([KEY], headers, b"{}", now).signed_by == 0
    assert verify([signing_key(whsec(bytes(24))), OTHER_KEY], headers, b"{}", now).signed_by == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec(bytes(24))).verify(b"{}", headers)


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        pytest.param({}, "no webhook-id, webhook-timestamp, webhook-signature header", id="none"),
        pytest.param(
            {"webhook-id": "x", "webhook-timestamp": "1.5", "webhook-signature": "v1,x"},
            "not whole seconds",
            id="fractional timestamp",
        ),
        pytest.param(
            {"webhook-id": "x", "webhook-timestamp": "١٢٣", "webhook-signature": "v1,x"},
            "not whole seconds",
            id="non-ASCII digits",
        ),
        pytest.param(
            {"webhook-id": "x", "webhook-timestamp": "9" * 40, "webhook-signature": "v1,x"},
            "not whole seconds",
            id="huge timestamp",
        ),
        pytest.param(
            {"Webhook-Id": "x", "WEBHOOK-TIMESTAMP": "1", "webhook-signature": "v1,\udcff"},
            "no signature matches",
            id="any case, undecodable signature",
        ),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(headers: dict[str, str], problem: str) -> None:
    verdict = verify([KEY], headers, b"{}", time.time())
    assert not verdict.accepted
    assert problem in verdict.problem


@pytest.mark.parametrize(("offset", "word"), [(-301, "old"), (301, "far ahead")])
def test_a_timestamp_beyond_the_tolerance_is_refused_by_both(offset: int, word: str) -> None:
    now = int(time.time())
    headers = signed_headers([KEY], "T1:2", now + offset, b"{}")
    with pytest.raises(WebhookVerificationError, match="too"):
        Webhook(SECRET).verify(b"{}", headers)
    verdict = verify([KEY], headers, b"{}", now)
    assert verdict.signed_by == 0
    assert word in verdict.problem
    assert verify([KEY], headers, b"{}", now, tolerance_s=None).accepted


def test_standard_webhooks_signs_as_we_do() -> None:
    when = datetime.fromtimestamp(SPEC_TIMESTAMP, tz=UTC)
    assert Webhook(SECRET).sign("T1:2", when, b"{}") == signature(
        KEY, "T1:2", SPEC_TIMESTAMP, b"{}"
    )


def test_no_keys_no_headers() -> None:
    assert signed_headers([], "T1:2", 1, b"{}") == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("c2VjcmV0", "must start with whsec_", id="no prefix"),
        pytest.param("whsec_", "0 bytes", id="empty key"),
        pytest.param("whsec_" + base64.b64encode(bytes(23)).decode(), "23 bytes", id="too short"),
        pytest.param("whsec_" + base64.b64encode(bytes(65)).decode(), "65 bytes", id="too long"),
        pytest.param("whsec_not base64!", "not base64", id="not base64"),
        pytest.param("whsec_" + "A" * 33, "not base64", id="bad padding"),
        pytest.param("whsec_ÄÖÜ", "not base64", id="non-ASCII"),
    ],
)
def test_an_unusable_secret_is_refused_without_its_value(text: str, reason: str) -> None:
    with pytest.raises(SigningSecretError, match=reason) as caught:
        signing_key(text)
    assert text.removeprefix("whsec_") not in str(caught.value) or not text.removeprefix("whsec_")


@given(key=keys)
def test_every_key_of_a_good_length_reads_back(key: bytes) -> None:
    assert signing_key(whsec(key)) == SigningKey(key)


def test_many_presented_signatures_cost_one_hmac_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A header line of 64 KiB holds ~10 000 candidates; an HMAC of a 1 MiB body for each
    # was seconds of CPU per delivery, on the event loop of the sandbox that verifies.
    computed: list[int] = []
    real_new = webhooks.hmac.new

    def counting_new(*args: Any, **kwargs: Any) -> Any:
        computed.append(1)
        return real_new(*args, **kwargs)

    monkeypatch.setattr(webhooks.hmac, "new", counting_new)
    now = int(time.time())
    forged = " ".join(f"v1,{index}" for index in range(5000))
    headers = {"webhook-id": "T1:2", "webhook-timestamp": str(now), "webhook-signature": forged}
    verdict = verify([KEY, OTHER_KEY], headers, b"{}", now)
    assert not verdict.accepted
    assert len(computed) == 2


def test_an_id_that_is_not_utf8_is_checked_as_the_bytes_sent() -> None:
    # A server hands a header's bytes that are not UTF-8 over as surrogates (aiohttp does):
    # a verdict, not an exception, and the bytes are what the signature is checked over.
    now = int(time.time())
    message_id = b"T\xff:2".decode("utf-8", "surrogateescape")
    digest = hmac.new(KEY.key, b"T\xff:2.%d.{}" % now, hashlib.sha256).digest()
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(now),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    assert verify([KEY], headers, b"{}", now).accepted
    assert not verify([OTHER_KEY], headers, b"{}", now).accepted


def test_a_secret_behind_a_byte_order_mark_is_refused_saying_so() -> None:
    # What some editors write at the start of a file saved as UTF-8: invisible, so "must
    # start with whsec_" would puzzle whoever looks at the file.
    with pytest.raises(SigningSecretError, match="byte order mark") as caught:
        signing_key("\ufeff" + SECRET)
    assert SECRET.removeprefix("whsec_") not in str(caught.value)
