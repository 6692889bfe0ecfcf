"""Callers, rights, limits and the doc's parameter rules, through the gateway to a double."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.config.load import from_mapping
from gateway.core.endpoints import SEND_ACTIVITY, SEND_NOTIFY, TRADE_CLOSE, TRADE_DETAIL
from gateway.core.endpoints import TRADE as TRADE_ENDPOINT
from gateway.runtime.app import create_app
from tests.conftest import guarded
from tests.support.answers import error_of
from tests.support.paths import CLOSE, DETAIL, ECHO, NOTIFY, TRADE
from tests.support.platform_double import APPID, SECRET, PlatformDouble
from tests.support.rawhttp import raw_request, statuses
from tests.support.valid_params import VALID as VALID_PARAMS

Client = TestClient[Any, Any]
ORDERS_TOKEN = "orders-token-0123456789abcdef"
NOTIFIER_TOKEN = "notifier-token-0123456789abcdef"


def orders(token: str = ORDERS_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_gateway(aiohttp_client: Any, platform_url: str, **overrides: Any) -> Client:
    app = {"secret_env": "DEMO_SECRET", "upstream": platform_url}
    document: dict[str, Any] = {
        "apps": {"demo": {"appid": APPID, **app}, "shop": {"appid": "shop-appid", **app}},
        "default_app": "demo",
        "callers": {
            "orders": {
                "token_env": "ORDERS_TOKEN",
                "apps": ["demo"],
                "allow": [
                    f"POST {TRADE}",
                    "POST /neuopenapi/pay/transactions/tradeclose",
                    f"GET {DETAIL}",
                ],
            },
            "notifier": {
                "token_env": "NOTIFIER_TOKEN",
                "apps": ["demo", "shop"],
                "allow": [
                    "POST /neuopenapi/notify/*",
                    "POST /neuopenapi/activity/*",
                    "* /neuopenapi/test/*",
                ],
            },
        },
        **overrides,
    }
    environ = {
        "DEMO_SECRET": SECRET,
        "ORDERS_TOKEN": ORDERS_TOKEN,
        "NOTIFIER_TOKEN": NOTIFIER_TOKEN,
    }
    client: Client = await aiohttp_client(guarded(create_app(from_mapping(document, environ))))
    return client


@pytest.fixture
async def gateway(aiohttp_client: Any, platform_url: str) -> Client:
    return await make_gateway(aiohttp_client, platform_url)


# Who is calling


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no token"),
        pytest.param(orders("wrong-token-0123456789abcdef"), id="unknown token"),
        pytest.param({"Authorization": f"Basic {ORDERS_TOKEN}"}, id="not a bearer token"),
    ],
)
async def test_unauthenticated_is_401_and_never_forwarded(
    gateway: Client, platform: PlatformDouble, headers: dict[str, str]
) -> None:
    response = await gateway.get(DETAIL, params={"tradeNo": "T"}, headers=headers)
    status, code, message = await error_of(response)
    assert (status, code) == (401, "unauthenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in message
    assert "wrong-token" not in message
    assert ORDERS_TOKEN not in message
    assert platform.received == []
    # Counted under the documented route it asked for, as a 403 is.
    metrics = await (await gateway.get("/metrics")).text()
    assert f'route="{DETAIL}",status="401"' in metrics


async def test_a_known_caller_within_its_rights_is_forwarded(
    gateway: Client, platform: PlatformDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "neu_gateway.access")
    response = await gateway.get(DETAIL, params={"tradeNo": "T"}, headers=orders())
    assert response.status == 200
    assert platform.last.sign_ok
    assert "Authorization" not in platform.last.headers
    assert "caller=orders app=demo method=GET" in caplog.text
    assert ORDERS_TOKEN not in caplog.text


async def test_an_app_outside_the_callers_rights_is_403(
    gateway: Client, platform: PlatformDouble
) -> None:
    response = await gateway.get(
        DETAIL, params={"tradeNo": "T"}, headers={**orders(), "X-Neu-App": "shop"}
    )
    assert await error_of(response) == (403, "forbidden", "caller 'orders' may not use app 'shop'")
    unknown = await gateway.get(
        DETAIL, params={"tradeNo": "T"}, headers={**orders(), "X-Neu-App": "x"}
    )
    status, code, message = await error_of(unknown)
    assert (status, code) == (404, "unknown_app")
    assert "shop" not in message, "only the caller's own apps are named"
    assert platform.received == []


async def test_a_route_outside_the_callers_rights_is_403(
    gateway: Client, platform: PlatformDouble
) -> None:
    response = await gateway.post(NOTIFY, data={"title": "t"}, headers=orders())
    assert await error_of(response) == (
        403,
        "forbidden",
        f"caller 'orders' may not call POST {NOTIFY}",
    )
    assert platform.received == []


async def test_trusted_networks_need_no_token(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    gateway = await make_gateway(aiohttp_client, platform_url, trusted_networks=["127.0.0.1/32"])
    response = await gateway.post(ECHO, data={"x": "1"})
    assert response.status == 200
    wrong = await gateway.post(
        ECHO, data={"x": "1"}, headers=orders("wrong-token-0123456789abcdef")
    )
    assert wrong.status == 401, "a token that is sent must be right, even from a trusted network"


@pytest.mark.parametrize(
    "authorization",
    ["Basic b3JkZXJzOng=", "Token orders-token-0123456789abcdef", "Bearer ", "Bearer", ""],
)
async def test_any_credential_sent_from_a_trusted_network_must_be_right(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble, authorization: str
) -> None:
    gateway = await make_gateway(aiohttp_client, platform_url, trusted_networks=["127.0.0.1/32"])
    response = await gateway.post(ECHO, data={"x": "1"}, headers={"Authorization": authorization})
    assert (await error_of(response))[:2] == (401, "unauthenticated")
    assert platform.received == []


async def test_other_networks_are_not_trusted(aiohttp_client: Any, platform_url: str) -> None:
    gateway = await make_gateway(aiohttp_client, platform_url, trusted_networks=["10.0.0.0/8"])
    assert (await gateway.post(ECHO, data={"x": "1"})).status == 401


async def test_an_unauthenticated_upload_is_refused_before_the_body(
    gateway: Client, platform: PlatformDouble
) -> None:
    head = (
        f"POST {ECHO} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        "Content-Length: 50000000\r\nExpect: 100-continue\r\nConnection: close"
    ).encode()
    status, body = await raw_request(gateway.port, head)
    assert (status, body["error"]) == (401, "unauthenticated")
    assert platform.received == []


# Limits


@pytest.mark.parametrize(
    ("limits", "data", "message"),
    [
        pytest.param(
            {"max_params": 3},
            {f"k{i}": "v" for i in range(4)},
            "too many parameters",
            id="count",
        ),
        pytest.param(
            {"max_key_length": 5}, {"longname": "v"}, "name 'longname' is longer", id="name length"
        ),
        pytest.param(
            {"max_value_length": 5}, {"k": "123456"}, "value of 'k' is longer", id="value length"
        ),
    ],
)
async def test_parameter_limits(
    aiohttp_client: Any,
    platform_url: str,
    platform: PlatformDouble,
    limits: dict[str, int],
    data: dict[str, str],
    message: str,
) -> None:
    gateway = await make_gateway(aiohttp_client, platform_url, limits=limits)
    status, code, text = await error_of(
        await gateway.post(ECHO, data=data, headers=orders(NOTIFIER_TOKEN))
    )
    assert (status, code) == (400, "invalid_params")
    assert message in text
    assert platform.received == []


async def test_header_size_limit(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    gateway = await make_gateway(aiohttp_client, platform_url, limits={"max_header_bytes": 2048})
    response = await gateway.post(
        ECHO, data={"x": "1"}, headers={**orders(NOTIFIER_TOKEN), "X-Big": "a" * 4000}
    )
    assert (await error_of(response))[:2] == (431, "headers_too_large")
    huge = await gateway.post(
        ECHO, data={"x": "1"}, headers={**orders(NOTIFIER_TOKEN), "X-Big": "a" * 60000}
    )
    assert (await error_of(huge))[:2] == (431, "headers_too_large")
    assert platform.received == []


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        pytest.param(
            b"a=%zz",
            "application/x-www-form-urlencoded",
            "invalid_params",
            id="malformed percent-encoding",
        ),
        pytest.param(
            b"a=\xff\xfe", "application/x-www-form-urlencoded", "invalid_params", id="invalid UTF-8"
        ),
        pytest.param(
            b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
            "invalid_multipart",
            id="multipart part without a name",
        ),
        pytest.param(b"[1]", "application/json", "invalid_json", id="JSON that is not an object"),
    ],
)
async def test_malformed_bodies(
    gateway: Client, platform: PlatformDouble, body: bytes, content_type: str, code: str
) -> None:
    headers = {**orders(NOTIFIER_TOKEN), "Content-Type": content_type}
    assert (await error_of(await gateway.post(ECHO, data=body, headers=headers)))[:2] == (400, code)
    assert platform.received == []


# The doc's parameter rules


# One valid call of each endpoint the doc lists beyond the login pair.
VALID = {
    endpoint.path: VALID_PARAMS[endpoint]
    for endpoint in (TRADE_DETAIL, TRADE_CLOSE, TRADE_ENDPOINT, SEND_NOTIFY, SEND_ACTIVITY)
}


async def test_valid_params_pass(gateway: Client, platform: PlatformDouble) -> None:
    for path, params in VALID.items():
        token = ORDERS_TOKEN if path in (TRADE, DETAIL, CLOSE) else NOTIFIER_TOKEN
        if path == DETAIL:
            response = await gateway.get(path, params=params, headers=orders(token))
        else:
            response = await gateway.post(path, data=params, headers=orders(token))
        assert response.status == 200
    assert len(platform.received) == len(VALID)


async def test_every_problem_in_one_answer(gateway: Client, platform: PlatformDouble) -> None:
    """The doc's rules refuse before anything is sent, every problem named at once (the
    messages themselves are tested against core.endpoints.validate)."""
    response = await gateway.post(
        NOTIFY, data={"navigateType": "2"}, headers=orders(NOTIFIER_TOKEN)
    )
    status, code, message = await error_of(response)
    assert (status, code) == (400, "validation_failed")
    assert message.startswith(f"invalid parameters for POST {NOTIFY}: notifyType: required; ")
    for name in ("notifyType", "openIds", "title", "text", "language", "url"):
        assert f"{name}: required" in message
    assert platform.received == []


async def test_a_known_endpoint_with_the_wrong_method_is_405(
    aiohttp_client: Any, platform_url: str
) -> None:
    gateway = await make_gateway(aiohttp_client, platform_url, callers={})
    response = await gateway.get(TRADE)
    assert (await error_of(response))[:2] == (405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"


async def test_unknown_endpoints_are_forwarded_unless_strict(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    relaxed = await make_gateway(aiohttp_client, platform_url, callers={})
    assert (await relaxed.post(ECHO, data={"x": "1"})).status == 200
    strict = await make_gateway(aiohttp_client, platform_url, callers={}, strict_endpoints=True)
    assert (await error_of(await strict.post(ECHO, data={"x": "1"})))[:2] == (
        404,
        "unknown_endpoint",
    )
    assert len(platform.received) == 1


async def test_an_unknown_expectation_is_417_and_the_body_is_not_sent(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    gateway = await make_gateway(aiohttp_client, platform_url)
    head = (
        f"POST {ECHO} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        f"Authorization: Bearer {NOTIFIER_TOKEN}\r\n"
        "Content-Length: 5\r\nExpect: something-else\r\nConnection: close"
    ).encode()
    status, body = await raw_request(gateway.port, head)
    assert (status, body["error"]) == (417, "expectation_failed")
    assert platform.received == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/healthz", id="an admin endpoint"),
        pytest.param("POST", "/healthz", id="a method the route does not take"),
        pytest.param("POST", "/nowhere", id="a path no route takes"),
    ],
)
async def test_an_unknown_expectation_off_the_api_is_refused_in_the_envelope(
    gateway: Client, method: str, path: str
) -> None:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
        "Expect: something-else\r\nX-Request-Id: expect-3\r\nConnection: close"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(head + b"\r\n\r\n")
        async with asyncio.timeout(10):
            answer = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"\r\nContent-Length: (\d+)\r\n", answer)
            assert length is not None, answer
            answer += await reader.readexactly(int(length.group(1)))
            # The connection ends with this answer, and nothing follows it; told the client is
            # done, the gateway need not linger 2 s for the body it was promised.
            assert b"\r\nConnection: close\r\n" in answer, answer
            writer.write_eof()
            answer += await reader.read()
    finally:
        writer.close()
    assert statuses(answer) == [417], answer
    assert b"\r\nX-Request-Id: expect-3\r\n" in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "expectation_failed"


async def test_a_request_admitted_at_expect_continue_is_forwarded(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    gateway = await make_gateway(aiohttp_client, platform_url)
    response = await gateway.post(
        ECHO, data={"x": "1"}, headers={**orders(NOTIFIER_TOKEN), "Expect": "100-continue"}
    )
    assert response.status == 200
    assert len(platform.received) == 1
