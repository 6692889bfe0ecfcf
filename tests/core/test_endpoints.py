"""The platform's endpoints as data: which exist, what each does beyond signing, and the
messages `validate` gives for parameters that break the doc's rules (tested here once; the
HTTP tests of the sandbox and the gateway only check that such a message reaches the caller)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.endpoints import (
    ACCESS_TOKEN,
    ENDPOINTS,
    SEND_ACTIVITY,
    SEND_NOTIFY,
    TRADE,
    TRADE_CLOSE,
    TRADE_DETAIL,
    USER_INFO,
    Endpoint,
    Extra,
    validate,
)
from gateway.core.platform import TRADE_DETAIL_PATH
from tests.support.valid_params import VALID


def test_the_endpoints_are_the_docs() -> None:
    assert set(ENDPOINTS) == {
        "/neuopenapi/oauth/mini/accessToken",
        "/neuopenapi/oauth/mini/user/info",
        "/neuopenapi/pay/transactions/trade",
        "/neuopenapi/pay/transactions/tradedetail",
        "/neuopenapi/pay/transactions/tradeclose",
        "/neuopenapi/notify/sendNotify",
        "/neuopenapi/activity/sendActivity",
    }


def test_the_extras_are_where_the_doc_puts_the_behaviour() -> None:
    extras = {path: endpoint.extra for path, endpoint in ENDPOINTS.items() if endpoint.extra}
    assert extras == {
        "/neuopenapi/oauth/mini/accessToken": Extra.EXCHANGE,
        "/neuopenapi/oauth/mini/user/info": Extra.USER_BY_OPEN_ID,
        TRADE_DETAIL_PATH: Extra.TRADE_WAIT,
    }


def test_open_id_may_stand_in_for_the_access_token_only_at_user_info() -> None:
    stand_ins = {path: e.stand_ins for path, e in ENDPOINTS.items() if e.stand_ins}
    assert stand_ins == {"/neuopenapi/oauth/mini/user/info": (("openId", "accessToken"),)}


def name_of(endpoint: Endpoint) -> str:
    return endpoint.path.rsplit("/", 1)[1]


def test_the_valid_parameters_are_valid() -> None:
    assert {name_of(e): validate(e, params) for e, params in VALID.items()} == {
        name_of(e): [] for e in VALID
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


URL_RULE = "must be an http(s) URL without query or fragment"
WHOLE = "must be a whole number"
POSITIVE = "must be a positive whole number"


@pytest.mark.parametrize(
    ("endpoint", "change", "message"),
    [
        pytest.param(ACCESS_TOKEN, {"code": ""}, "code: required", id="token: no code"),
        pytest.param(
            ACCESS_TOKEN,
            {"grantType": "password"},
            "grantType: must be one of authorization_code",
            id="token: grant type",
        ),
        pytest.param(
            ACCESS_TOKEN,
            {"scope": "user.info,all,x"},
            "scope: unknown all, x; use user.info or user.phone, comma-separated",
            id="token: unknown scopes",
        ),
        pytest.param(USER_INFO, {"accessToken": ""}, "accessToken: required", id="info: no token"),
        pytest.param(TRADE, {"outTradeNo": ""}, "outTradeNo: required", id="trade: no outTradeNo"),
        pytest.param(
            TRADE,
            {"outTradeNo": "bad no!"},
            "outTradeNo: only letters, digits and _ - *",
            id="trade: outTradeNo pattern",
        ),
        pytest.param(TRADE, {"amount": ""}, "amount: required", id="trade: no amount"),
        pytest.param(TRADE, {"amount": "0"}, f"amount: {POSITIVE}", id="trade: zero amount"),
        pytest.param(TRADE, {"amount": "-5"}, f"amount: {POSITIVE}", id="trade: negative amount"),
        pytest.param(TRADE, {"amount": "1.5"}, f"amount: {POSITIVE}", id="trade: fraction"),
        pytest.param(TRADE, {"amount": "ten"}, f"amount: {POSITIVE}", id="trade: amount in words"),
        pytest.param(
            TRADE, {"amount": "1" * 20}, f"amount: {POSITIVE}", id="trade: amount over a Long"
        ),
        pytest.param(TRADE, {"currency": ""}, "currency: required", id="trade: no currency"),
        pytest.param(
            TRADE,
            {"currency": "EUR"},
            "currency: must be one of CNY, USD, SGD, SAR",
            id="trade: currency",
        ),
        pytest.param(
            TRADE, {"timeExpire": "soon"}, f"timeExpire: {POSITIVE}", id="trade: timeExpire Long"
        ),
        pytest.param(TRADE, {"notifyUrl": ""}, "notifyUrl: required", id="trade: no notifyUrl"),
        pytest.param(
            TRADE, {"notifyUrl": "not a url"}, f"notifyUrl: {URL_RULE}", id="trade: notifyUrl"
        ),
        pytest.param(
            TRADE, {"notifyUrl": "ftp://x"}, f"notifyUrl: {URL_RULE}", id="trade: notifyUrl ftp"
        ),
        pytest.param(
            TRADE,
            {"notifyUrl": "https://x.example/n?a=1"},
            f"notifyUrl: {URL_RULE}",
            id="trade: notifyUrl with query",
        ),
        pytest.param(
            TRADE,
            {"notifyUrl": "https://x.example/n#f"},
            f"notifyUrl: {URL_RULE}",
            id="trade: notifyUrl with fragment",
        ),
        pytest.param(TRADE, {"openId": ""}, "openId: required", id="trade: no openId"),
        pytest.param(TRADE_DETAIL, {"tradeNo": ""}, "tradeNo: required", id="tradedetail"),
        pytest.param(TRADE_CLOSE, {"tradeNo": ""}, "tradeNo: required", id="tradeclose"),
        pytest.param(
            SEND_NOTIFY, {"notifyType": ""}, "notifyType: required", id="notify: no notifyType"
        ),
        pytest.param(
            SEND_NOTIFY, {"notifyType": "one"}, f"notifyType: {WHOLE}", id="notify: notifyType int"
        ),
        pytest.param(
            SEND_NOTIFY,
            {"notifyType": "2"},
            "notifyType: must be one of 1",
            id="notify: notifyType",
        ),
        pytest.param(SEND_NOTIFY, {"openIds": ""}, "openIds: required", id="notify: no openIds"),
        pytest.param(
            SEND_NOTIFY,
            {"openIds": "a,,b"},
            "openIds: must be a comma-separated list without empty items",
            id="notify: openIds list",
        ),
        pytest.param(SEND_NOTIFY, {"title": ""}, "title: required", id="notify: no title"),
        pytest.param(SEND_NOTIFY, {"text": ""}, "text: required", id="notify: no text"),
        pytest.param(
            SEND_NOTIFY,
            {"navigateType": ""},
            "navigateType: required",
            id="notify: no navigateType",
        ),
        pytest.param(
            SEND_NOTIFY,
            {"navigateType": "3"},
            "navigateType: must be one of 1, 2",
            id="notify: navigateType",
        ),
        pytest.param(
            SEND_NOTIFY,
            {"url": ""},
            "url: required when navigateType is 2 (navigate to a URL)",
            id="notify: url when navigateType 2",
        ),
        pytest.param(SEND_NOTIFY, {"language": ""}, "language: required", id="notify: no language"),
        pytest.param(
            SEND_NOTIFY,
            {"language": "fr_FR"},
            "language: must be one of zh_CN, en_US, ar_SA",
            id="notify: language",
        ),
        *(
            pytest.param(SEND_ACTIVITY, {name: ""}, f"{name}: required", id=f"activity: no {name}")
            for name in (
                "activityId",
                "openIds",
                "color",
                "templateId",
                "title",
                "text",
                "iconUrl",
                "status",
                "validityTime",
                "language",
            )
        ),
        pytest.param(
            SEND_ACTIVITY, {"status": "2"}, "status: must be one of 0, 1", id="activity: status"
        ),
        pytest.param(
            SEND_ACTIVITY, {"validityTime": "0"}, f"validityTime: {POSITIVE}", id="activity: zero"
        ),
        pytest.param(
            SEND_ACTIVITY,
            {"validityTime": "1.5"},
            f"validityTime: {POSITIVE}",
            id="activity: validityTime fraction",
        ),
    ],
)
def test_validation_messages(endpoint: Endpoint, change: Mapping[str, str], message: str) -> None:
    assert validate(endpoint, {**VALID[endpoint], **change}) == [message]


@pytest.mark.parametrize(
    ("endpoint", "change"),
    [
        pytest.param(ACCESS_TOKEN, {"scope": "user.info, user.phone"}, id="scopes with a space"),
        pytest.param(TRADE, {"merchantId": "", "description": "", "timeExpire": ""}, id="optional"),
        pytest.param(SEND_NOTIFY, {"navigateType": "1", "url": ""}, id="navigateType 1, no url"),
        pytest.param(SEND_ACTIVITY, {"status": "0", "path": ""}, id="activity taken down"),
    ],
)
def test_what_the_rules_let_through(endpoint: Endpoint, change: Mapping[str, str]) -> None:
    assert validate(endpoint, {**VALID[endpoint], **change}) == []


def test_every_problem_is_listed_at_once_in_the_docs_order() -> None:
    assert validate(SEND_NOTIFY, {"navigateType": "2"}) == [
        "notifyType: required",
        "openIds: required",
        "title: required",
        "text: required",
        "language: required",
        "url: required when navigateType is 2 (navigate to a URL)",
    ]


def test_without_value_checks_only_required_parameters_are_refused() -> None:
    """An app's `validation: off`: the doc's lists of values may be out of date."""
    loose = {**VALID[TRADE], "currency": "EUR", "amount": "ten", "notifyUrl": "ftp://x"}
    assert validate(TRADE, loose, values=False) == []
    assert validate(TRADE, {**loose, "openId": ""}, values=False) == ["openId: required"]
    assert validate(SEND_NOTIFY, {**VALID[SEND_NOTIFY], "url": ""}, values=False) == []


@given(
    st.dictionaries(
        st.sampled_from(["amount", "timeExpire", "notifyUrl", "outTradeNo", "currency"]),
        st.text(max_size=30),
    )
)
def test_validation_never_fails_unexpectedly(params: dict[str, str]) -> None:
    for problem in validate(TRADE, params):
        assert ": " in problem
