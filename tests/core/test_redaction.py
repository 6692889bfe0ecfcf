"""The redaction rules: what never reaches a log line, and what is left alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.redaction import REDACTED, escape_controls, redact

JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.eyJpYXQiOjE2NzEwMDk1NDMsIm9wZW5JZCI6IjIyIn0."
    "pa54O9Da_W8TF4hEF7O3-UFVGWHNfMHyCJYcJKBMdcZoeAuqpktnMLPygnbsWbe"
)
SIGN = "964bd40923c2f8911560c18cb06f580d3d26436378c11edff3f0691e4db00242"


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        pytest.param(f"token {JWT} used", JWT, id="a JWT anywhere"),
        pytest.param(f"sign={SIGN}&x=1", SIGN, id="a sign in a query"),
        pytest.param(f"got {SIGN.upper()}", SIGN.upper(), id="64 hex digits"),
        pytest.param("code=ce5f098c-8ae8&scope=user.info", "ce5f098c", id="code in a query"),
        pytest.param('{"phone": "18510538893"}', "18510538893", id="phone in JSON"),
        pytest.param('{"accessToken":"abc.def"}', "abc.def", id="accessToken in JSON"),
        pytest.param("Authorization: Bearer caller-token-xyz", "caller-token-xyz", id="bearer"),
        pytest.param("redis://:pw-123@redis:6379/0", "pw-123", id="password in a URL"),
        pytest.param("the secret is my-app-secret", "my-app-secret", id="a known secret"),
    ],
)
def test_redact(text: str, gone: str) -> None:
    redacted = redact(text, ["my-app-secret"])
    assert gone not in redacted
    assert REDACTED in redacted


@pytest.mark.parametrize("length", range(8, len(JWT) + 1))
def test_a_jwt_cut_short_is_still_redacted(length: int) -> None:
    cut = JWT[:length]
    redacted = redact(f"refused a payment callback for app {cut}: no such app")
    assert redacted == f"refused a payment callback for app {REDACTED}: no such app"


def test_ordinary_text_is_left_alone() -> None:
    line = "request_id=ab12 caller=orders app=demo method=POST route=/neuopenapi/x status=200"
    assert redact(line) == line


@given(
    st.text(min_size=8, alphabet=st.characters(codec="ascii", categories=["L", "N"])),
    st.text(),
    st.text(),
)
def test_a_known_secret_never_survives(secret: str, before: str, after: str) -> None:
    assert secret not in redact(before + secret + after, [secret])


@pytest.mark.parametrize(
    "key",
    [
        "phoneNumber",
        "authCode",
        "refreshToken",
        "client_secret",
        "x-api-credential",
        "refresh_token[]",
        "mobile(1)",
        "tel",
        "a" * 70 + "Token",
        "otp",
        "apiKey",
        "cardNo",
        "sessionId",
    ],
)
def test_keys_are_redacted_by_the_words_their_names_hold(key: str) -> None:
    line = f"upstream GET http://p/neuopenapi/x?tradeNo=t1&{key}=value-123&a=1"
    redacted = redact(line)
    assert "value-123" not in redacted
    assert "tradeNo=t1" in redacted
    assert redact(f'{{"{key}": "value-123", "tradeNo": "t1"}}').count("value-123") == 0


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("demo\n2026 INFO forged", "demo\\n2026 INFO forged"),
        ("a\r\nb", "a\\r\\nb"),
        ("esc\x1b[2Kx", "esc\\x1b[2Kx"),
        ("nel\x85x", "nel\\x85x"),
        ("sep\u2028x", "sep\\u2028x"),
        ("tab\tx", "tab\\tx"),
    ],
)
def test_control_characters_from_the_network_are_escaped(given: str, shown: str) -> None:
    assert escape_controls(given) == shown


def test_a_space_before_the_equals_sign_hides_nothing() -> None:
    assert "value-123" not in redact("x?code =value-123&y=1")


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        pytest.param("remark=18510538893&x=1", "18510538893", id="a mobile under a neutral key"),
        pytest.param('{"value": "13800138000"}', "13800138000", id="in JSON under a neutral key"),
        pytest.param("call me on 19912345678.", "19912345678", id="in free text"),
        pytest.param("to +86 185 1053 8893 now", "185 1053 8893", id="international, spaced"),
        pytest.param("to +966-50-123-4567 now", "50-123-4567", id="international, dashed"),
        pytest.param("+6591234567", "91234567", id="international, bare"),
    ],
)
def test_phone_numbers_are_redacted_under_any_key(text: str, gone: str) -> None:
    cleaned = redact(text)
    assert gone not in cleaned
    assert REDACTED in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "timestamp=1764374400000",  # milliseconds: 13 digits
        "at 2026-11-29T00:53:57.810+00:00",
        "tradeNo=2026112900123456789",
        "amount=12000 currency=CNY",
        "took 12345678901234 ns",
        "offset +12.5 s",
    ],
)
def test_numbers_that_are_not_phone_numbers_are_left_alone(text: str) -> None:
    assert redact(text) == text
