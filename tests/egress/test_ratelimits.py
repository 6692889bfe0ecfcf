"""A caller's rate_limit: 429 rate_limited with Retry-After past it, per caller, nothing
forwarded, the limit changed by a reload."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from gateway.config.load import from_mapping
from gateway.runtime.app import create_app
from gateway.runtime.reload import apply_config
from tests.conftest import guarded
from tests.support.clock import MutableClock
from tests.support.paths import ECHO
from tests.support.platform_double import APPID, SECRET, PlatformDouble

Client = TestClient[Any, Any]
ORDERS = {"Authorization": "Bearer orders-token-0123456789abcdef"}
NOTIFIER = {"Authorization": "Bearer notifier-token-0123456789abcdef"}
ENVIRON = {
    "S": SECRET,
    "ORDERS_TOKEN": "orders-token-0123456789abcdef",
    "NOTIFIER_TOKEN": "notifier-token-0123456789abcdef",
}


def document(platform_url: str, orders_rate: dict[str, Any] | None) -> dict[str, Any]:
    orders: dict[str, Any] = {"token_env": "ORDERS_TOKEN", "apps": ["demo"]}
    if orders_rate is not None:
        orders["rate_limit"] = orders_rate
    return {
        "apps": {"demo": {"appid": APPID, "secret_env": "S", "upstream": platform_url}},
        "callers": {
            "orders": {**orders, "allow": ["* /neuopenapi/*"]},
            "notifier": {
                "token_env": "NOTIFIER_TOKEN",
                "apps": ["demo"],
                "allow": ["* /neuopenapi/*"],
            },
        },
    }


async def gateway_with(
    aiohttp_client: Any, platform_url: str, clock: MutableClock, rate: dict[str, Any] | None
) -> Client:
    config = from_mapping(document(platform_url, rate), ENVIRON)
    client: Client = await aiohttp_client(guarded(create_app(config, clock)))
    return client


async def statuses(gateway: Client, headers: dict[str, str], count: int) -> list[int]:
    found = []
    for _ in range(count):
        async with gateway.get(ECHO, params={"a": "1"}, headers=headers) as response:
            await response.read()
            found.append(response.status)
    return found


async def test_past_its_burst_a_caller_is_answered_429_until_the_rate_refills(
    aiohttp_client: Any, platform_url: str, platform: PlatformDouble
) -> None:
    clock = MutableClock()
    gateway = await gateway_with(
        aiohttp_client, platform_url, clock, {"requests_per_s": 0.5, "burst": 2}
    )
    assert await statuses(gateway, ORDERS, 2) == [200, 200]
    response = await gateway.get(ECHO, params={"a": "1"}, headers=ORDERS)
    assert response.status == 429
    assert response.headers["Retry-After"] == "2"
    body = await response.json()
    assert body["error"] == "rate_limited"
    assert body["responseHeader"]["status"] == 429
    assert body["responseHeader"]["msg"] == (
        "caller 'orders' is over its rate limit (0.5 requests a second, bursts of 2); retry in 2 s"
    )
    assert len(platform.received) == 2, "a refused request is not forwarded"
    # Another caller has its own budget (here: none).
    assert await statuses(gateway, NOTIFIER, 5) == [200] * 5
    clock.advance(2)
    assert await statuses(gateway, ORDERS, 2) == [200, 429]
    metrics = await (await gateway.get("/metrics")).text()
    assert 'caller="orders",method="GET",route="other",status="429"} 2.0' in metrics


async def test_the_burst_defaults_to_a_seconds_worth(
    aiohttp_client: Any, platform_url: str
) -> None:
    clock = MutableClock()
    gateway = await gateway_with(aiohttp_client, platform_url, clock, {"requests_per_s": 3})
    assert await statuses(gateway, ORDERS, 4) == [200, 200, 200, 429]


async def test_a_post_refused_for_its_rate_is_refused_before_its_body(
    aiohttp_client: Any, platform_url: str
) -> None:
    clock = MutableClock()
    gateway = await gateway_with(
        aiohttp_client, platform_url, clock, {"requests_per_s": 1, "burst": 1}
    )
    assert await statuses(gateway, ORDERS, 1) == [200]
    response = await gateway.post(
        ECHO,
        data=b"a=1",
        headers={**ORDERS, "Content-Type": "application/x-www-form-urlencoded"},
        expect100=True,
    )
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"


async def test_a_reload_changes_the_rate_and_keeps_an_unchanged_one(
    aiohttp_client: Any, platform_url: str
) -> None:
    clock = MutableClock()
    gateway = await gateway_with(
        aiohttp_client, platform_url, clock, {"requests_per_s": 1, "burst": 1}
    )
    assert await statuses(gateway, ORDERS, 2) == [200, 429]
    # The same rate: the bucket, empty, is kept.
    apply_config(gateway.app, from_mapping(document(platform_url, {"requests_per_s": 1}), ENVIRON))
    assert await statuses(gateway, ORDERS, 1) == [429]
    apply_config(
        gateway.app,
        from_mapping(document(platform_url, {"requests_per_s": 1, "burst": 3}), ENVIRON),
    )
    assert await statuses(gateway, ORDERS, 4) == [200, 200, 200, 429]
    apply_config(gateway.app, from_mapping(document(platform_url, None), ENVIRON))
    assert await statuses(gateway, ORDERS, 5) == [200] * 5
