"""Which app a request is for when it does not say (no `X-Neu-App`)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.config.load import from_mapping
from gateway.runtime.app import create_app
from tests.conftest import guarded
from tests.support.answers import error_of
from tests.support.paths import DETAIL
from tests.support.platform_double import APPID, SECRET, PlatformDouble, reference_sign

Client = TestClient[Any, Any]
SHOP_SECRET = "shop-secret"
TOKENS = {
    "ORDERS_TOKEN": "orders-token-0123456789abcdef",
    "NOTIFIER_TOKEN": "notifier-token-0123456789abcdef",
}


def bearer(caller: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[caller.upper() + '_TOKEN']}"}


async def make_gateway(aiohttp_client: Any, platform_url: str, **overrides: Any) -> Client:
    """Two apps and no default: `orders` may use `shop` only, `notifier` both."""
    document: dict[str, Any] = {
        "apps": {
            "demo": {"appid": APPID, "secret_env": "DEMO_SECRET", "upstream": platform_url},
            "shop": {"appid": "shop-appid", "secret_env": "SHOP_SECRET", "upstream": platform_url},
        },
        "callers": {
            "orders": {"token_env": "ORDERS_TOKEN", "apps": ["shop"], "allow": [f"GET {DETAIL}"]},
            "notifier": {
                "token_env": "NOTIFIER_TOKEN",
                "apps": ["demo", "shop"],
                "allow": [f"GET {DETAIL}"],
            },
        },
        "trusted_networks": ["127.0.0.1/32"],
        **overrides,
    }
    environ = {"DEMO_SECRET": SECRET, "SHOP_SECRET": SHOP_SECRET, **TOKENS}
    client: Client = await aiohttp_client(guarded(create_app(from_mapping(document, environ))))
    return client


@pytest.fixture
async def gateway(aiohttp_client: Any, platform_url: str) -> Client:
    return await make_gateway(aiohttp_client, platform_url)


async def test_a_caller_allowed_one_app_needs_no_header(
    gateway: Client, platform: PlatformDouble
) -> None:
    response = await gateway.get(DETAIL, params={"tradeNo": "T"}, headers=bearer("orders"))
    assert response.status == 200
    assert platform.last.params["appid"] == "shop-appid"
    assert platform.last.params["sign"] == reference_sign(platform.last.params, SHOP_SECRET)


async def test_a_caller_allowed_several_apps_must_name_one(
    gateway: Client, platform: PlatformDouble
) -> None:
    response = await gateway.get(DETAIL, params={"tradeNo": "T"}, headers=bearer("notifier"))
    status, code, message = await error_of(response)
    assert (status, code) == (400, "app_required")
    assert "X-Neu-App" in message
    assert "demo, shop" in message
    assert platform.received == []


async def test_a_request_without_a_token_must_name_the_app(
    gateway: Client, platform: PlatformDouble
) -> None:
    # From a trusted network: no caller, so no rights to narrow the apps down.
    response = await gateway.get(DETAIL, params={"tradeNo": "T"})
    assert (await error_of(response))[:2] == (400, "app_required")
    assert platform.received == []


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        pytest.param("shop", (200, None), id="its own app named: forwarded"),
        pytest.param("demo", (403, "forbidden"), id="another app named: still refused"),
        pytest.param("nope", (404, "unknown_app"), id="an unknown app named: still 404"),
    ],
)
async def test_a_named_app_is_checked_as_before(
    gateway: Client, platform: PlatformDouble, app: str, expected: tuple[int, str | None]
) -> None:
    response = await gateway.get(
        DETAIL, params={"tradeNo": "T"}, headers={**bearer("orders"), "X-Neu-App": app}
    )
    if expected[1] is None:
        assert response.status == expected[0]
        assert platform.last.params["appid"] == "shop-appid"
    else:
        assert (await error_of(response))[:2] == expected
        assert platform.received == []


async def test_default_app_still_wins_over_the_callers_only_app(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    gateway = await make_gateway(aiohttp_client, platform_url, default_app="demo")
    response = await gateway.get(DETAIL, params={"tradeNo": "T"}, headers=bearer("orders"))
    status, code, message = await error_of(response)
    assert (status, code) == (403, "forbidden")
    assert message == "caller 'orders' may not use app 'demo'"
    assert platform.received == []
