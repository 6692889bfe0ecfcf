"""The simulator as a new user first meets it: a user to open the mini app with at once, the
cashier right under the users at 1280x1000, and a whole mini app's story without one request
leaving this machine, an activity card's icon included."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, expect

from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import DEMO_USER, Settings
from tests.browser.conftest import TIMEOUT_MS
from tests.browser.test_simulator import ok, page_url
from tests.support.paths import DETAIL
from tests.support.platform_double import APPID, SECRET
from tests.support.processes import GatewayProcess, StartGateway, write_config
from tests.support.receiver import CallbackReceiver
from tests.support.sandbox_client import signed

pytestmark = pytest.mark.e2e
Client = TestClient[Any, Any]
# The size the issue saw a 300 px gap at.
DESKTOP_TALL = {"width": 1280, "height": 1000}
ICON_URL = "https://shop.example.com/icon.png"
# Every policy violation the page meets, kept where the test can read it: a load the policy
# blocks makes no request to record, so it is caught here.
RECORD_VIOLATIONS = """
    window.violations = [];
    document.addEventListener("securitypolicyviolation", (event) => {
        window.violations.push(`${event.violatedDirective} ${event.blockedURI}`);
    });
"""


@pytest.fixture
async def sandbox(aiohttp_client: Any) -> Client:
    client: Client = await aiohttp_client(create_sandbox_app({APPID: SECRET}, Settings()))
    return client


@pytest.fixture
async def gateway(tmp_path: Path, start_gateway: StartGateway) -> GatewayProcess:
    return await start_gateway(write_config(tmp_path))


async def test_a_fresh_sandbox_opens_the_mini_app_at_once_and_a_reset_brings_the_demo_user_back(
    sandbox: Client, page: Page
) -> None:
    await page.goto(page_url(sandbox))
    chosen = page.get_by_label("User on the phone")
    await expect(chosen).to_have_value(DEMO_USER.phone)
    await expect(chosen).to_contain_text(f"{DEMO_USER.name} (+86 {DEMO_USER.phone})")
    await expect(page.locator("#phone-owner")).to_have_text(f"{DEMO_USER.name}'s phone")
    await page.get_by_role("button", name="Open mini app").click()
    await expect(page.locator("#open-status")).to_have_text("The mini app has its one-time code.")
    await expect(page.get_by_test_id("login-code")).not_to_be_empty()

    await sandbox.post("/sandbox/users", data={"name": "Bob"})
    await chosen.select_option("Bob")
    await sandbox.post("/sandbox/reset")
    # Bob is gone with the reset; the page falls back to the world's one user.
    await expect(chosen).to_have_value(DEMO_USER.phone)
    await expect(chosen.locator("option")).to_have_count(1)
    await page.get_by_role("button", name="Open mini app").click()
    await expect(page.locator("#open-status")).to_have_text("The mini app has its one-time code.")


async def test_no_gap_above_the_cashier_at_1280_by_1000(sandbox: Client, browser: Browser) -> None:
    # A long request log and a user without trades: the request log and the phone, spanning
    # both rows, are taller than the users and the cashier together.
    for number in range(8):
        await sandbox.get(DETAIL, params=signed({"tradeNo": f"T{number}"}))
    context = await browser.new_context(viewport=DESKTOP_TALL)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(page_url(sandbox))
    await expect(page.get_by_test_id("request")).to_have_count(8)
    await expect(page.locator("#no-trades")).to_be_visible()
    users, cashier, log = [
        await page.locator(selector).bounding_box()
        for selector in (".users", ".cashier", ".requests")
    ]
    assert users is not None
    assert cashier is not None
    assert log is not None
    assert log["height"] > users["height"] + cashier["height"] + 100, "no tall column to test"
    row_gap = await page.evaluate(
        "parseFloat(getComputedStyle(document.querySelector('.layout')).rowGap)"
    )
    assert cashier["x"] == users["x"]
    assert cashier["y"] - (users["y"] + users["height"]) == pytest.approx(row_gap, abs=1)
    await context.close()


async def test_a_whole_story_with_an_activity_card_requests_nothing_from_elsewhere(
    gateway: GatewayProcess, browser: Browser, receiver: CallbackReceiver
) -> None:
    context = await browser.new_context(viewport=DESKTOP_TALL)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    failed: list[str] = []
    context.on("requestfailed", lambda request: failed.append(request.url))
    await context.add_init_script(RECORD_VIOLATIONS)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(f"{gateway.sandbox_url}/")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")

    await page.get_by_role("button", name="Open mini app").click()
    code_shown = page.get_by_test_id("login-code")
    await expect(code_shown).to_have_text(re.compile(r"^[0-9a-f-]{36}$"))
    code = await code_shown.inner_text()
    async with aiohttp.ClientSession() as http:
        gw = gateway.url
        token = await ok(
            await http.post(
                f"{gw}/neuopenapi/oauth/mini/accessToken",
                data={"code": code, "grantType": "authorization_code", "scope": "user.info"},
            )
        )
        user = await ok(
            await http.get(
                f"{gw}/neuopenapi/oauth/mini/user/info",
                params={"accessToken": token["accessToken"]},
            )
        )
        assert user["nickName"] == DEMO_USER.name
        open_id = user["openId"]
        trade = {
            "outTradeNo": "order-1001",
            "amount": "1999",
            "currency": "SAR",
            "openId": open_id,
            "notifyUrl": receiver.url,
        }
        await ok(await http.post(f"{gw}/neuopenapi/pay/transactions/trade", data=trade))
        await page.get_by_role("button", name="Pay").click()
        await expect(page.get_by_test_id("callback-attempt")).to_contain_text("HTTP 200")
        notify = {
            "openIds": open_id,
            "notifyType": "1",
            "navigateType": "1",
            "link": "pages/orders/1001",
            "title": "Paid",
            "text": "Order 1001 is paid",
            "language": "en_US",
        }
        await ok(await http.post(f"{gw}/neuopenapi/notify/sendNotify", data=notify))
        card = {
            "activityId": "order-1001",
            "openIds": open_id,
            "color": "FFD54F",
            "templateId": "1",
            "title": "Order",
            "text": "On its way",
            "iconUrl": ICON_URL,
            "status": "1",
            "validityTime": "600",
            "language": "en_US",
        }
        await ok(await http.post(f"{gw}/neuopenapi/activity/sendActivity", data=card))

    activity = page.get_by_test_id("activity")
    await expect(activity).to_contain_text("On its way")
    # The icon is drawn on the page, its URL told as text.
    await expect(activity.get_by_test_id("activity-icon")).to_have_text("O")
    await expect(activity.get_by_test_id("activity-icon-url")).to_have_text(
        "shop.example.com/icon.png"
    )
    await expect(activity.get_by_test_id("activity-icon-url")).to_have_attribute(
        "title", f"iconUrl: {ICON_URL}"
    )
    await page.get_by_test_id("notification").get_by_role("button").click()
    await expect(page.locator("#phone-toast")).to_contain_text("pages/orders/1001")
    await page.get_by_role("button", name="Open mini app").click()
    await expect(page.locator("#open-status")).to_have_text("The mini app has its one-time code.")

    elsewhere = [url for url in requested if urlsplit(url).hostname != "127.0.0.1"]
    assert elsewhere == []
    assert len(requested) > 10, requested  # the page, its files, its controls were seen
    assert await page.evaluate("window.violations") == []
    assert failed == []
    assert await activity.locator("img").count() == 0
    await context.close()
