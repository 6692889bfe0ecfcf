"""HS512 tokens as the platform issues them: what the sandbox signs, verifies, and what the
gateway reads without a key."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core import jwt

KEY = b"sandbox-signing-key"
claims_strategy = st.dictionaries(
    st.text(max_size=12),
    st.one_of(st.integers(), st.text(max_size=20), st.booleans(), st.none()),
    max_size=6,
)


@given(claims_strategy)
def test_what_is_signed_decodes_to_the_same_claims(claims: dict[str, Any]) -> None:
    token = jwt.encode(claims, KEY)
    assert token.count(".") == 2
    assert jwt.decode(token, KEY) == claims
    assert jwt.unverified_claims(token) == claims


@given(claims_strategy)
def test_another_key_does_not_verify(claims: dict[str, Any]) -> None:
    with pytest.raises(jwt.TokenError, match="signature does not verify"):
        jwt.decode(jwt.encode(claims, KEY), b"another key")


def test_a_changed_claim_does_not_verify() -> None:
    head, _, signature = jwt.encode({"openId": "u1"}, KEY).split(".")
    forged_body = jwt.encode({"openId": "admin"}, KEY).split(".")[1]
    with pytest.raises(jwt.TokenError, match="signature does not verify"):
        jwt.decode(f"{head}.{forged_body}.{signature}", KEY)


def test_another_algorithm_in_the_header_does_not_verify() -> None:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"typ": "JWT", "alg": "none"}).encode())
    body = b64(b'{"openId":"u1"}')
    signature = b64(hmac.new(KEY, f"{head}.{body}".encode(), hashlib.sha512).digest())
    with pytest.raises(jwt.TokenError, match="signature does not verify"):
        jwt.decode(f"{head}.{body}.{signature}", KEY)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "three dot-separated parts"),
        ("a.b", "three dot-separated parts"),
        ("a.b.c.d", "three dot-separated parts"),
        ("!!!.###.$$$", "bad base64url or JSON"),
        ("e30.bm90IGpzb24.AAAA", "bad base64url or JSON"),
    ],
)
def test_what_is_no_jwt_is_named(token: str, reason: str) -> None:
    with pytest.raises(jwt.TokenError, match=reason):
        jwt.decode(token, KEY)


def test_claims_that_are_no_object_are_refused_even_when_signed() -> None:
    token = jwt.encode({"x": 1}, KEY)
    head, _, _ = token.split(".")
    import base64
    import hashlib
    import hmac

    body = base64.urlsafe_b64encode(b"[1,2]").rstrip(b"=").decode()
    signature = hmac.new(KEY, f"{head}.{body}".encode(), hashlib.sha512).digest()
    signed = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    with pytest.raises(jwt.TokenError, match="claims are not an object"):
        jwt.decode(f"{head}.{body}.{signed}", KEY)
    assert jwt.unverified_claims(f"{head}.{body}.{signed}") is None


@pytest.mark.parametrize("token", ["", "opaque-token", "a.b", "a.!!!.c", "a.bm90IGpzb24.c"])
def test_a_token_that_is_no_jwt_has_no_claims(token: str) -> None:
    assert jwt.unverified_claims(token) is None


@given(st.text(max_size=200))
def test_reading_claims_never_raises(token: str) -> None:
    claims = jwt.unverified_claims(token)
    assert claims is None or isinstance(claims, dict)
