"""The core parts the sandbox stands on: its JWTs and its request verification (the endpoint
tables are tested in tests/core/test_endpoints.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core import jwt
from gateway.core.verification import Rejected, check_signed_request
from tests.support.platform_double import reference_sign

KEY = b"k" * 64
NOW = 1_700_000_000_000


def test_jwt_round_trip_and_tamper() -> None:
    token = jwt.encode({"openId": "o", "exp": 5}, KEY)
    assert jwt.decode(token, KEY) == {"openId": "o", "exp": 5}
    head, body, signature = token.split(".")
    with pytest.raises(jwt.TokenError):
        jwt.decode(f"{head}.{body}x.{signature}", KEY)
    with pytest.raises(jwt.TokenError):
        jwt.decode(token, b"other")


@given(st.text(max_size=300))
def test_jwt_parser_only_ever_raises_token_error(text: str) -> None:
    with pytest.raises(jwt.TokenError):
        jwt.decode(text, KEY)


@given(st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=5))
def test_jwt_claims_round_trip(claims: dict[str, object]) -> None:
    assert jwt.decode(jwt.encode(claims, KEY), KEY) == claims


def signed(params: dict[str, str]) -> dict[str, str]:
    stamped = {"appid": "a", "timestamp": str(NOW), **params}
    return {**stamped, "sign": reference_sign(stamped, "s")}


def test_a_signed_request_passes() -> None:
    assert check_signed_request(signed({"x": "1"}), {"a": "s"}, NOW, explain=False) == "a"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"timestamp": str(NOW - 300_001)}, 401),
        ({"timestamp": str(NOW + 300_001)}, 401),
        ({"timestamp": "\uff11\uff12\uff13"}, 400),
        ({"timestamp": "9" * 25}, 400),
    ],
    ids=["just over 5 minutes behind", "just over 5 minutes ahead", "non-ASCII digits", "too long"],
)
def test_timestamp_limits(change: dict[str, str], status: int) -> None:
    with pytest.raises(Rejected) as caught:
        check_signed_request({**signed({}), **change}, {"a": "s"}, NOW, explain=False)
    assert caught.value.status == status


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=6), st.booleans())
def test_verification_never_fails_unexpectedly(params: dict[str, str], explain: bool) -> None:
    with pytest.raises(Rejected) as caught:
        check_signed_request(params, {"a": "s"}, NOW, explain)
    assert caught.value.status in (400, 401)
