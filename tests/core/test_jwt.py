"""JWTs as the platform issues its accessTokens: HS512, base64url without padding, compact
JSON; decode refuses anything this key did not sign, unverified_claims reads without a key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.core import jwt

KEY = b"k" * 64
# encode({"openId": "o", "exp": 5}, KEY), put together by hand below.
TOKEN = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.eyJvcGVuSWQiOiJvIiwiZXhwIjo1fQ."
    "DRdDQbRhlwNFzQgfS5ycjXfaHdi2nkb8uHq5lZ_yKplcUQckAxALcYCcu9GKOCA-kOYgsX3ptMU6r6P0AC5vzw"
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def signed_by_hand(header: object, claims: object, key: bytes = KEY) -> str:
    """A token built apart from gateway.core.jwt: any header, any claims, HS512."""
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha512).digest()
    return f"{head}.{body}.{b64url(mac)}"


def test_encode_is_compact_json_hs512_and_unpadded_base64url() -> None:
    assert jwt.encode({"openId": "o", "exp": 5}, KEY) == TOKEN
    assert signed_by_hand({"typ": "JWT", "alg": "HS512"}, {"openId": "o", "exp": 5}) == TOKEN


@given(st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=7), max_size=4))
@example({})  # a body whose base64 needs no padding
@example({"a": 1})  # one that needs two = (dropped and put back)
@example({"ab": 1})  # one that needs one =
def test_decode_gives_back_what_encode_was_given(claims: dict[str, object]) -> None:
    token = jwt.encode(claims, KEY)
    assert "=" not in token
    assert jwt.decode(token, KEY) == claims
    assert jwt.unverified_claims(token) == claims


def refusal(token: str, key: bytes = KEY) -> str:
    with pytest.raises(jwt.TokenError) as caught:
        jwt.decode(token, key)
    return str(caught.value)


# A caller's accessToken is read for its claims when the platform refuses it (to evict it):
# json recurses once a level, so this would raise RecursionError, not be refused.
NESTED_TOO_DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param("a.b", "not a JWT (three dot-separated parts)", id="two parts"),
        pytest.param(TOKEN + ".x", "not a JWT (three dot-separated parts)", id="four parts"),
        pytest.param("", "not a JWT (three dot-separated parts)", id="nothing"),
        pytest.param("a.b.c", "not a JWT (bad base64url or JSON)", id="not base64url"),
        pytest.param(
            TOKEN.replace(".eyJ", ".!yJ"), "not a JWT (bad base64url or JSON)", id="bad claims"
        ),
        pytest.param(
            f"{b64url(b'{')}.{TOKEN.split('.')[1]}.{TOKEN.split('.')[2]}",
            "not a JWT (bad base64url or JSON)",
            id="a header that is not JSON",
        ),
        pytest.param(
            TOKEN.replace(".DRdD", ".ERdD"), "signature does not verify", id="another signature"
        ),
        pytest.param(
            signed_by_hand({"typ": "JWT", "alg": "HS256"}, {"openId": "o"}),
            "signature does not verify",
            id="signed right under another header",
        ),
        pytest.param(
            f"{b64url(NESTED_TOO_DEEP)}.{TOKEN.split('.')[1]}.{TOKEN.split('.')[2]}",
            "not a JWT (bad base64url or JSON)",
            id="a header nested too deeply",
        ),
        pytest.param(
            signed_by_hand({"typ": "JWT", "alg": "HS512"}, ["o"]),
            "claims are not an object",
            id="claims that are a list",
        ),
    ],
)
def test_decode_refuses(token: str, message: str) -> None:
    assert refusal(token) == message


def test_decode_refuses_another_keys_token() -> None:
    assert refusal(TOKEN, b"other") == "signature does not verify"


@pytest.mark.parametrize(
    ("token", "claims"),
    [
        pytest.param(TOKEN, {"openId": "o", "exp": 5}, id="a token"),
        pytest.param(TOKEN[:-5], {"openId": "o", "exp": 5}, id="unchecked signature"),
        pytest.param("a.b", None, id="two parts"),
        pytest.param(TOKEN + ".x", None, id="four parts"),
        pytest.param("a.!!.c", None, id="not base64url"),
        pytest.param(f"a.{b64url(b'[1]')}.c", None, id="claims that are a list"),
        pytest.param(f"a.{b64url(b'{}')}.c", {}, id="no claims"),
        pytest.param(f"a.{b64url(NESTED_TOO_DEEP)}.c", None, id="claims nested too deeply"),
    ],
)
def test_unverified_claims(token: str, claims: dict[str, object] | None) -> None:
    assert jwt.unverified_claims(token) == claims


@given(st.text(max_size=200))
def test_reading_claims_never_raises(token: str) -> None:
    claims = jwt.unverified_claims(token)
    assert claims is None or isinstance(claims, dict)


@given(st.text(max_size=300))
def test_decode_only_ever_raises_token_error(text: str) -> None:
    with pytest.raises(jwt.TokenError):
        jwt.decode(text, KEY)
