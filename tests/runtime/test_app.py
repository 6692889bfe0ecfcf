"""create_app: the state a request reads, the routes, and the admin endpoints where the config
puts them."""

from __future__ import annotations

from typing import Any

from gateway.callbacks.delivery import Destination
from gateway.egress.keys import BASE_URLS
from gateway.http.keys import CONFIG, LIVE_CONFIG, METRICS
from gateway.runtime.app import create_app
from gateway.runtime.keys import DELIVER_TO, EMBEDDED_SANDBOX
from tests.conftest import gateway_config, guarded
from tests.support.paths import BENCH_ECHO
from tests.support.platform_double import APPID, SECRET, PlatformDouble


def test_a_new_app_holds_its_config_in_force_and_where_each_app_goes() -> None:
    config = gateway_config(
        "https://platform.example",
        apps={
            "demo": {
                "appid": APPID,
                "secret_env": "DEMO_SECRET",
                "upstream": "https://platform.example",
                "callbacks": {"deliver_to": "http://orders.internal/payments"},
            }
        },
    )
    app = create_app(config)
    assert app[CONFIG] is config
    assert app[LIVE_CONFIG].current is config
    assert app[BASE_URLS] == {"demo": "https://platform.example"}
    assert app[DELIVER_TO] == {"demo": Destination("http://orders.internal/payments")}
    assert app[EMBEDDED_SANDBOX] == []


async def test_the_app_forwards_under_the_api_prefix_and_serves_the_admin_endpoints(
    aiohttp_client: Any, platform: PlatformDouble, platform_url: str
) -> None:
    client = await aiohttp_client(guarded(create_app(gateway_config(platform_url))))
    response = await client.post(BENCH_ECHO, data={"x": "1"})
    assert response.status == 200
    [received] = platform.received
    assert (received.path, received.params["x"], received.sign_ok) == (
        BENCH_ECHO,
        "1",
        True,
    )
    assert SECRET not in str(received.params)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/elsewhere")).status == 404


async def test_the_metrics_say_when_the_config_was_loaded(
    aiohttp_client: Any, platform_url: str
) -> None:
    client = await aiohttp_client(guarded(create_app(gateway_config(platform_url))))
    text = await (await client.get("/metrics")).text()
    loaded_at = client.app[LIVE_CONFIG].loaded_at
    [line] = [line for line in text.splitlines() if line.startswith("neu_gateway_config_loaded")]
    assert float(line.split()[-1]) == loaded_at
    assert client.app[METRICS] is not None
