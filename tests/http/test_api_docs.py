"""GET /openapi.json and GET /docs as a running gateway serves them: the description of what
that gateway checks, and Swagger UI from the installed package, nothing from elsewhere."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from gateway.config.load import from_mapping
from gateway.http.api_docs import ASSETS, ASSETS_DIR, main_listener_url
from gateway.runtime.app import create_app
from tests.conftest import gateway_config, guarded
from tests.support.platform_double import APPID, SECRET

TOKEN = "shop-token-0123456789abcdef"


async def with_caller(aiohttp_client: Any, platform_url: str, **overrides: Any) -> Any:
    """A gateway whose one caller, shop, needs its token."""
    document: dict[str, Any] = {
        "apps": {"demo": {"appid": APPID, "secret_env": "DEMO_SECRET", "upstream": platform_url}},
        "callers": {
            "shop": {"token_env": "SHOP_TOKEN", "apps": ["demo"], "allow": ["GET /neuopenapi/x"]}
        },
        **overrides,
    }
    config = from_mapping(document, {"DEMO_SECRET": SECRET, "SHOP_TOKEN": TOKEN})
    return await aiohttp_client(guarded(create_app(config)))


def test_the_swagger_ui_files_the_page_loads_are_in_the_installed_package() -> None:
    # The one place that knows swagger-ui-py's layout: a release that moves them fails here.
    for name in ASSETS:
        assert (ASSETS_DIR / name).is_file(), name
    assert "SwaggerUIBundle" in (ASSETS_DIR / "swagger-ui-bundle.js").read_text()[:4096]


async def test_the_description_is_served_valid_and_says_what_this_gateway_checks(
    aiohttp_client: Any, platform_url: str
) -> None:
    gateway = await with_caller(aiohttp_client, platform_url, limits={"max_value_length": 300})
    response = await gateway.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    document: dict[str, Any] = await response.json()
    validate(document)
    assert document["servers"] == [{"url": "/", "description": "this gateway"}]
    assert document["components"]["parameters"]["App"]["schema"]["enum"] == ["demo"]
    assert document["security"] == [{"callerToken": []}]
    trade = document["paths"]["/neuopenapi/pay/transactions/trade"]["post"]
    form = trade["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form["properties"]["outTradeNo"]["maxLength"] == 300


async def test_without_callers_the_description_needs_no_token(
    gateway: TestClient[Any, Any],
) -> None:
    document = await (await gateway.get("/openapi.json")).json()
    assert {} in document["security"]


async def test_the_description_needs_no_caller_token_and_answers_head(
    aiohttp_client: Any, platform_url: str
) -> None:
    gateway = await with_caller(aiohttp_client, platform_url)
    assert (await gateway.get("/openapi.json")).status == 200
    assert (await gateway.head("/openapi.json")).status == 200
    assert (await gateway.get("/neuopenapi/pay/transactions/tradedetail")).status == 401


async def test_the_docs_page_loads_only_the_gateways_own_files(
    gateway: TestClient[Any, Any],
) -> None:
    page = await gateway.get("/docs")
    assert page.status == 200
    html = await page.text()
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    loaded = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert loaded
    assert all(url.startswith("/docs/") for url in loaded), loaded
    for url in loaded:
        response = await gateway.get(url)
        assert response.status == 200, url
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    init = await (await gateway.get("/docs/init.js")).text()
    assert '"/openapi.json"' in init


@pytest.mark.parametrize(
    "path", ["/docs/index.html", "/docs/../gateway.yaml", "/docs/%2e%2e%2fgateway.yaml", "/docs/"]
)
async def test_only_the_pages_files_are_served_from_the_package(
    gateway: TestClient[Any, Any], path: str
) -> None:
    response = await gateway.get(path)
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("::1", "http://[::1]:8080"),
        ("gateway.internal", "http://gateway.internal:8080"),
    ],
)
def test_a_description_served_on_the_admin_listener_names_the_main_listener(
    host: str, url: str
) -> None:
    config = gateway_config(
        "https://platform.example",
        listen={"host": host, "port": 8080},
        insecure_allow_anonymous=True,
    )
    assert main_listener_url(config) == url
