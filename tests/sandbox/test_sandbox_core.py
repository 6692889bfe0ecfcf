"""The sandbox's pure parts: its JWTs, its request verification, and the endpoint tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core import jwt
from gateway.core.endpoints import ENDPOINTS, SEND_NOTIFY, TRADE, validate
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


def test_endpoint_tables_cover_the_doc() -> None:
    assert set(ENDPOINTS) == {
        "/neuopenapi/oauth/mini/accessToken",
        "/neuopenapi/oauth/mini/user/info",
        "/neuopenapi/pay/transactions/trade",
        "/neuopenapi/pay/transactions/tradedetail",
        "/neuopenapi/pay/transactions/tradeclose",
        "/neuopenapi/notify/sendNotify",
        "/neuopenapi/activity/sendActivity",
    }


def test_the_doc_samples_are_valid() -> None:
    trade = {
        "merchantId": "",
        "description": "",
        "outTradeNo": "test007",
        "timeExpire": "",
        "notifyUrl": "https://shop.example/superpay/notify",
        "amount": "100",
        "currency": "USD",
        "openId": "358a2136a94a67b23631c67dfe386230",
    }
    assert validate(TRADE, trade) == []
    notify = {
        "language": "en_US",
        "navigateType": "2",
        "notifyType": "1",
        "openIds": "19d3c6832e63392331ff6dfe7b0d0f7b",
        "text": "openid",
        "title": "openid",
        "url": "https://www.baidu.com",
        "link": "",
    }
    assert validate(SEND_NOTIFY, notify) == []


@given(
    st.dictionaries(
        st.sampled_from(["amount", "timeExpire", "notifyUrl", "outTradeNo", "currency"]),
        st.text(max_size=30),
    )
)
def test_validation_never_fails_unexpectedly(params: dict[str, str]) -> None:
    for problem in validate(TRADE, params):
        assert ": " in problem
