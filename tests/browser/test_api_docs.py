"""GET /docs in a real browser: Swagger UI renders the gateway's description from the
gateway's own files alone, and its "Try it out" calls the gateway."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import ConsoleMessage, Page

from gateway.core.endpoints import ENDPOINTS
from gateway.runtime.app import create_app
from tests.conftest import gateway_config, guarded
from tests.support.paths import DETAIL

pytestmark = pytest.mark.e2e
Client = TestClient[Any, Any]


@pytest.fixture
async def gateway(aiohttp_client: Any) -> Client:
    client: Client = await aiohttp_client(guarded(create_app(gateway_config("sandbox"))))
    return client


async def test_the_page_renders_every_endpoint_from_the_gateways_files_alone(
    gateway: Client, page: Page
) -> None:
    origin = str(gateway.make_url("")).rstrip("/")
    requested: list[str] = []
    refused: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: _note_policy(message, refused))
    await page.goto(str(gateway.make_url("/docs")))
    summaries = page.locator(".opblock-summary-path")
    await summaries.nth(len(ENDPOINTS) - 1).wait_for()
    # Swagger UI breaks long paths with zero-width spaces.
    shown = [text.replace("\u200b", "") for text in await summaries.all_inner_texts()]
    assert sorted(shown) == sorted(ENDPOINTS)
    assert requested
    elsewhere = [url for url in requested if not url.startswith((origin + "/", "data:"))]
    assert elsewhere == []
    assert f"{origin}/openapi.json" in requested
    assert refused == []


def _note_policy(message: ConsoleMessage, refused: list[str]) -> None:
    if "Content Security Policy" in message.text:
        refused.append(message.text)


async def test_try_it_out_sends_the_call_through_the_gateway(gateway: Client, page: Page) -> None:
    await page.goto(str(gateway.make_url("/docs")))
    operation = page.locator("#operations-pay-tradeDetail")
    await operation.locator(".opblock-summary").click()
    await operation.locator(".try-out__btn").click()
    await operation.locator('input[placeholder="tradeNo"]').fill("no-such-trade")
    async with page.expect_response(lambda response: DETAIL in response.url) as answered:
        await operation.locator(".execute").click()
    response = await (await answered.value).json()
    # The sandbox's own answer, relayed: the call was signed and forwarded.
    assert response["responseHeader"]["status"] == 404
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    assert (await status.inner_text()).strip() == "200"
