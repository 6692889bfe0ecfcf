"""What the gateway's OpenAPI description says of it and the fuzzer held it to: a JSON whole
number for a Long, one value where the doc takes one, no user named for user/info, Allow on a
documented endpoint, and multipart names aiohttp would change."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.answers import envelope_of
from tests.support.paths import CLOSE, DETAIL, TRADE, UPLOAD, USER_INFO
from tests.support.platform_double import APPID, PlatformDouble

Client = TestClient[Any, Any]
TRADE_FIELDS = {
    "outTradeNo": "order-1",
    "notifyUrl": "https://shop.example/notify",
    "currency": "USD",
    "openId": "o1",
}


@pytest.mark.parametrize(
    ("given", "sent"), [("100.0", "100"), ("1e2", "100"), ("1999", "1999"), ("2.50e1", "25")]
)
async def test_a_json_whole_number_for_a_long_is_sent_as_its_whole_text(
    gateway: Client, platform: PlatformDouble, given: str, sent: str
) -> None:
    body = json.dumps(TRADE_FIELDS)[:-1] + f', "amount": {given}, "description": 1.0}}'
    response = await gateway.post(TRADE, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 200
    received = platform.last
    assert received.sign_ok
    assert received.params["appid"] == APPID
    # A text parameter keeps the number's literal text: the caller's JSON, signed as sent.
    assert (received.params["amount"], received.params["description"]) == (sent, "1.0")


@pytest.mark.parametrize("amount", ["1.5", "1e400", "100.0"])
async def test_a_long_that_is_not_a_whole_json_number_is_refused(
    gateway: Client, platform: PlatformDouble, amount: str
) -> None:
    # "100.0" here is a JSON string: its text is not a whole number's.
    value = f'"{amount}"' if amount == "100.0" else amount
    body = json.dumps(TRADE_FIELDS)[:-1] + f', "amount": {value}}}'
    response = await gateway.post(TRADE, data=body, headers={"Content-Type": "application/json"})
    message = await envelope_of(response, 400, "validation_failed")
    assert "amount: must be a positive whole number" in message


@pytest.mark.parametrize(
    "send",
    [
        {"data": [("tradeNo", "t1"), ("tradeNo", "t2")]},
        {"data": '{"tradeNo": ["t1"]}', "headers": {"Content-Type": "application/json"}},
        {"data": '{"tradeNo": []}', "headers": {"Content-Type": "application/json"}},
    ],
    ids=["repeated form key", "JSON list", "empty JSON list"],
)
async def test_a_list_for_a_one_value_parameter_is_refused(
    gateway: Client, send: dict[str, Any]
) -> None:
    message = await envelope_of(await gateway.post(CLOSE, **send), 400, "validation_failed")
    assert "tradeNo: must be one value, not a list" in message


async def test_a_list_parameter_still_takes_a_repeated_key(
    gateway: Client, platform: PlatformDouble
) -> None:
    response = await gateway.post(
        "/neuopenapi/notify/sendNotify",
        data=[
            ("openIds", "a"),
            ("openIds", "b"),
            ("notifyType", "1"),
            ("title", "t"),
            ("text", "x"),
            ("navigateType", "1"),
            ("language", "en_US"),
        ],
    )
    assert response.status == 200
    assert platform.last.params["openIds"] == "a,b"


async def test_with_validation_off_a_list_is_joined_as_before(
    make_gateway: Any, platform: PlatformDouble, platform_url: str
) -> None:
    gateway = await make_gateway(
        apps={
            "demo": {
                "appid": APPID,
                "secret_env": "DEMO_SECRET",
                "upstream": platform_url,
                "validation": "off",
            }
        }
    )
    response = await gateway.post(CLOSE, data=[("tradeNo", "t1"), ("tradeNo", "t2")])
    assert response.status == 200
    assert platform.last.params["tradeNo"] == "t1,t2"


async def test_user_info_naming_no_user_is_token_required(gateway: Client) -> None:
    message = await envelope_of(await gateway.get(USER_INFO), 401, "token_required")
    assert "send accessToken, or openId" in message


@pytest.mark.parametrize(
    ("path", "allow"), [(TRADE, "POST"), (DETAIL, "GET"), (UPLOAD, "GET, POST")]
)
@pytest.mark.parametrize("method", ["PUT", "DELETE", "OPTIONS", "PATCH"])
async def test_a_method_the_path_does_not_take_gets_405_naming_what_it_takes(
    gateway: Client, path: str, allow: str, method: str
) -> None:
    response = await gateway.request(method, path)
    assert response.status == 405
    assert response.headers["Allow"] == allow


@pytest.mark.parametrize(
    "disposition",
    [
        'form-data; name="/title"',
        'form-data; name="ti\\\\tle"',
        'form-data; name="ti\\"tle"',
        'form-data; name="fileData"; filename="/etc/passwd"',
        'form-data; name="fileData"; filename="C:\\\\x.txt"',
    ],
)
async def test_a_multipart_name_aiohttp_would_change_is_refused_not_changed(
    gateway: Client, platform: PlatformDouble, disposition: str
) -> None:
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\nvalue\r\n--{boundary}--\r\n"
    ).encode()
    response = await gateway.post(
        UPLOAD,
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    message = await envelope_of(response, 400, "invalid_multipart")
    assert "backslash or starts with a slash" in message
    assert platform.received == []


async def test_a_multipart_name_with_an_inner_slash_goes_as_it_came(
    gateway: Client, platform: PlatformDouble
) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="a/b"\r\n\r\nv\r\n--{boundary}--\r\n'
    ).encode()
    response = await gateway.post(
        UPLOAD, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status == 200
    assert platform.last.params["a/b"] == "v"
