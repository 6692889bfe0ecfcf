"""The SuperApp simulator page in a real browser: a mini app's story with the mouse and with
the keyboard alone, through the real gateway; the cashier's other outcomes, the request log's
sign explanation, the phone viewport, and updates without the event stream."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, expect

from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import DEMO_USER, Settings
from tests.browser.conftest import TIMEOUT_MS
from tests.support.paths import ACTIVITY, DETAIL, NOTIFY, TRADE
from tests.support.platform_double import APPID, SECRET
from tests.support.processes import GatewayProcess, StartGateway, write_config
from tests.support.receiver import CallbackReceiver
from tests.support.sandbox_client import call, signed

pytestmark = pytest.mark.e2e
Client = TestClient[Any, Any]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# Set by scripts/screenshot: where the desktop screenshot goes for docs/sandbox.md.
SCREENSHOT_ENV = "NEU_SIMULATOR_SCREENSHOT"


@pytest.fixture
async def gateway(tmp_path: Path, start_gateway: StartGateway) -> GatewayProcess:
    return await start_gateway(write_config(tmp_path))


@pytest.fixture
async def sandbox(aiohttp_client: Any) -> Client:
    """The sandbox alone, in this process, for the stories that need no gateway."""
    settings = Settings(notify_attempts=3, notify_backoff_s=0.5)
    client: Client = await aiohttp_client(create_sandbox_app({APPID: SECRET}, settings))
    return client


def page_url(sandbox: Client) -> str:
    return str(sandbox.make_url("/"))


async def ok(response: aiohttp.ClientResponse) -> Any:
    body = await response.json()
    assert body["responseHeader"]["status"] == 200, body
    return body["response"]


async def exchange_and_create_trade(
    http: aiohttp.ClientSession, gateway: str, code: str, notify_url: str
) -> str:
    """What the mini app's backend does with the code, through the gateway; the openId."""
    token = await ok(
        await http.post(
            f"{gateway}/neuopenapi/oauth/mini/accessToken",
            data={"code": code, "grantType": "authorization_code", "scope": "user.info,user.phone"},
        )
    )
    user = await ok(
        await http.get(
            f"{gateway}/neuopenapi/oauth/mini/user/info",
            params={"accessToken": token["accessToken"]},
        )
    )
    assert (user["nickName"], user["phone"], user["country"]) == ("Alice", "966500000001", "+966")
    await ok(
        await http.post(
            f"{gateway}/neuopenapi/pay/transactions/trade",
            data={
                "outTradeNo": "order-1001",
                "amount": "1999",
                "currency": "SAR",
                "openId": user["openId"],
                "notifyUrl": notify_url,
                "description": "Two coffees",
            },
        )
    )
    open_id: str = user["openId"]
    return open_id


async def send_notify(
    http: aiohttp.ClientSession, gateway: str, open_id: str, **extra: str
) -> None:
    fields = {
        "openIds": open_id,
        "notifyType": "1",
        "navigateType": "2",
        "url": "https://shop.example/orders/1001",
        "title": "Paid",
        "text": "Order 1001 is paid",
        "language": "en_US",
        **extra,
    }
    await ok(await http.post(f"{gateway}/neuopenapi/notify/sendNotify", data=fields))


async def test_a_mini_app_story_with_the_mouse(
    gateway: GatewayProcess, page: Page, receiver: CallbackReceiver
) -> None:
    await page.goto(f"{gateway.sandbox_url}/")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    await expect(page.get_by_label("User on the phone")).to_have_value(DEMO_USER.phone)
    await page.get_by_text("Create a user", exact=True).click()
    await page.get_by_role("textbox", name="Name").fill("Alice")
    await page.get_by_role("textbox", name="Phone").fill("966500000001")
    await page.get_by_label("Country").select_option("+966")
    await page.get_by_role("button", name="Create user").click()
    await expect(page.get_by_label("User on the phone")).to_have_value("966500000001")

    await page.get_by_role("button", name="Open mini app").click()
    code_shown = page.get_by_test_id("login-code")
    await expect(code_shown).to_have_text(re.compile(r"^[0-9a-f-]{36}$"))
    await expect(page.locator("#code-expiry")).to_have_text(re.compile(r"Expires in (5:00|4:5\d)$"))
    async with aiohttp.ClientSession() as http:
        code = await code_shown.inner_text()
        open_id = await exchange_and_create_trade(http, gateway.url, code, receiver.url)

        trade = page.get_by_test_id("trade").filter(has_text="order-1001")
        await expect(trade).to_contain_text("19.99 SAR")
        await expect(trade.get_by_test_id("trade-status")).to_have_text("processing")
        await trade.get_by_role("button", name="Pay").click()
        await expect(trade.get_by_test_id("trade-status")).to_have_text("succeeded")
        await expect(trade.get_by_test_id("callback-attempt")).to_contain_text(
            "Attempt 1 (succeeded) → HTTP 200"
        )
        [callback] = await receiver.wait_for(1)
        assert callback["transactionStatus"] == "2"

        await send_notify(http, gateway.url, open_id)
    notification = page.get_by_test_id("notification")
    await expect(notification).to_have_count(1)
    await expect(notification).to_contain_text("Paid")
    await expect(notification).to_contain_text("Order 1001 is paid")
    await expect(notification.get_by_role("link")).to_have_attribute(
        "href", "https://shop.example/orders/1001"
    )
    log = page.get_by_test_id("request")
    await expect(log.first).to_contain_text("POST /neuopenapi/notify/sendNotify")
    await expect(log.filter(has_text="/oauth/mini/accessToken")).to_contain_text("accepted")


async def tab_to(page: Page, selector: str, presses: int = 60) -> None:
    """Presses Tab until the focus is on `selector`; each stop must show its focus."""
    for _ in range(presses):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            """(selector) => {
                const element = document.activeElement;
                const style = getComputedStyle(element);
                return {
                    match: element.matches(selector),
                    outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
                    what: element.outerHTML.slice(0, 80),
                };
            }""",
            selector,
        )
        assert focused["outline"], f"no visible focus on {focused['what']}"
        if focused["match"]:
            return
    raise AssertionError(f"{presses} presses of Tab never reached {selector}")


async def test_the_same_story_with_the_keyboard_alone(
    gateway: GatewayProcess, browser: Browser, receiver: CallbackReceiver
) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(f"{gateway.sandbox_url}/")
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")

    await expect(page.locator("#current-user")).to_have_value(DEMO_USER.phone)
    await tab_to(page, "#new-user-box summary")
    await page.keyboard.press("Enter")
    await tab_to(page, "#user-name")
    await page.keyboard.type("Alice")
    await tab_to(page, "#user-phone")
    await page.keyboard.type("966500000001")
    await tab_to(page, "#user-country")
    await page.keyboard.press("ArrowDown")  # +86, then +966
    await expect(page.locator("#user-country")).to_have_value("+966")
    await tab_to(page, "#new-user button[type=submit]")
    await page.keyboard.press("Enter")
    await expect(page.locator("#current-user")).to_have_value("966500000001")

    await tab_to(page, "#backend-url")
    await page.keyboard.type(receiver.url)
    await tab_to(page, "#open-mini-app")
    await page.keyboard.press("Enter")
    code_shown = page.get_by_test_id("login-code")
    await expect(code_shown).to_have_text(re.compile(r"^[0-9a-f-]{36}$"))
    code = await code_shown.inner_text()
    # The mini app's front end hands the code to its backend.
    await expect(page.locator("#backend-result")).to_have_text(f"Sent to {receiver.url}: HTTP 200")
    assert receiver.received == [{"code": code}]
    await tab_to(page, "#copy-code")
    await page.keyboard.press("Enter")
    await expect(page.locator("#backend-result")).to_have_text("Code copied.")
    assert await page.evaluate("navigator.clipboard.readText()") == code

    async with aiohttp.ClientSession() as http:
        open_id = await exchange_and_create_trade(http, gateway.url, code, receiver.url)
        trade = page.get_by_test_id("trade").filter(has_text="order-1001")
        await expect(trade.get_by_test_id("trade-status")).to_have_text("processing")
        await tab_to(page, "[data-testid=trade] button.pay")
        await page.keyboard.press("Enter")
        await expect(trade.get_by_test_id("trade-status")).to_have_text("succeeded")
        # The buttons are gone with the processing status; the focus moved to the trade.
        await expect(trade).to_be_focused()
        await expect(trade.get_by_test_id("callback-attempt")).to_contain_text("HTTP 200")

        await send_notify(
            http, gateway.url, open_id, navigateType="1", url="", link="pages/orders/1001"
        )
    notification = page.get_by_test_id("notification")
    await expect(notification).to_contain_text("Order 1001 is paid")
    await tab_to(page, "[data-testid=notification] button")
    await page.keyboard.press("Enter")
    await expect(page.locator("#phone-toast")).to_have_text(
        f"Opening mini app {APPID} at pages/orders/1001"
    )
    await context.close()


async def open_as_a_new_user(page: Page, sandbox: Client, name: str) -> str:
    """Makes a user on the page, opens the mini app as them; their openId."""
    # The form is folded away once the page has users to pick, the demo user at least.
    await expect(page.get_by_label("User on the phone")).not_to_have_value("")
    await page.get_by_text("Create a user", exact=True).click()
    await page.get_by_role("textbox", name="Name").fill(name)
    await page.get_by_role("button", name="Create user").click()
    await expect(page.get_by_label("User on the phone")).to_have_value(name)
    await page.get_by_role("button", name="Open mini app").click()
    await expect(page.get_by_test_id("login-code")).not_to_be_empty()
    users = (await (await sandbox.get("/sandbox/users")).json())["response"]["users"]
    [user] = [user for user in users if user["user"] == name]
    assert user["loggedIn"] == [APPID]
    open_id: str = user["openIds"][APPID]
    return open_id


async def test_fail_let_expire_and_each_callback_attempt_show_live(
    sandbox: Client, page: Page, receiver: CallbackReceiver
) -> None:
    receiver.fail_first = 1
    await page.goto(page_url(sandbox))
    open_id = await open_as_a_new_user(page, sandbox, "Alice")
    for order, amount in (("order-1", "500"), ("order-2", "12345")):
        params = {
            "outTradeNo": order,
            "amount": amount,
            "currency": "USD",
            "openId": open_id,
            "notifyUrl": receiver.url,
        }
        await call(sandbox, "POST", TRADE, params)
    trades = page.get_by_test_id("trade")
    # Newest first, amounts in major units.
    await expect(trades).to_have_count(2)
    await expect(trades.nth(0)).to_contain_text("order-2")
    await expect(trades.nth(0)).to_contain_text("123.45 USD")
    await expect(trades.nth(1)).to_contain_text("5.00 USD")

    first, second = trades.filter(has_text="order-1"), trades.filter(has_text="order-2")
    await first.get_by_role("button", name="Fail").click()
    await expect(first.get_by_test_id("trade-status")).to_have_text("failed")
    attempts = first.get_by_test_id("callback-attempt")
    await expect(attempts.nth(0)).to_contain_text("Attempt 1 (failed) → HTTP 500")
    await expect(attempts.nth(1)).to_contain_text("Retry 1 (failed) → HTTP 200")
    await second.get_by_role("button", name="Let expire").click()
    await expect(second.get_by_test_id("trade-status")).to_have_text("expired")
    await expect(second.get_by_test_id("callback-attempt")).to_contain_text("HTTP 200")
    statuses = sorted(callback["transactionStatus"] for callback in await receiver.wait_for(3))
    assert statuses == ["3", "3", "4"]


async def test_a_retry_still_to_come_shows_when(
    aiohttp_client: Any, page: Page, receiver: CallbackReceiver
) -> None:
    receiver.fail_first = 1
    settings = Settings(notify_attempts=2, notify_backoff_s=30)
    sandbox = await aiohttp_client(create_sandbox_app({APPID: SECRET}, settings))
    await page.goto(page_url(sandbox))
    open_id = await open_as_a_new_user(page, sandbox, "Alice")
    params = {
        "outTradeNo": "order-1",
        "amount": "500",
        "currency": "USD",
        "openId": open_id,
        "notifyUrl": receiver.url,
    }
    await call(sandbox, "POST", TRADE, params)
    await page.get_by_role("button", name="Pay").click()
    await expect(page.get_by_test_id("callback-attempt")).to_contain_text(
        re.compile(r"Attempt 1 \(succeeded\) → HTTP 500 · next retry in 0:(30|2\d)")
    )


async def test_a_sign_rejection_shows_what_was_signed_and_where_a_string_differs(
    sandbox: Client, page: Page
) -> None:
    await page.goto(page_url(sandbox))
    params = {**signed({"tradeNo": "T1"}), "tradeNo": "T2"}  # changed after signing
    await sandbox.get(DETAIL, params=params)
    entry = page.get_by_test_id("request").first
    await expect(entry).to_contain_text("refused")
    await expect(entry).to_contain_text("401 sign error")
    await entry.get_by_text("What the platform signed").click()
    canonical = f"appid={APPID}secret=******timestamp={params['timestamp']}tradeNo=T2"
    await expect(entry.get_by_test_id("canonical")).to_have_text(canonical)
    await entry.get_by_text("Parameters (4)").click()
    await expect(entry.locator("table")).to_contain_text("sign******")
    assert SECRET not in await page.content()

    # What the caller signed: its own secret, and T1.
    theirs = f"appid={APPID}secret={SECRET}timestamp={params['timestamp']}tradeNo=T1"
    await entry.get_by_label("Your canonical string").fill(theirs)
    await entry.get_by_role("button", name="Compare").click()
    position = len(theirs) - 1
    await expect(entry.get_by_test_id("difference")).to_contain_text(
        f"First difference at position {position} (counting from 0) in tradeNo"
    )
    await entry.get_by_label("Your canonical string").fill(canonical)
    await entry.get_by_role("button", name="Compare").click()
    await expect(entry.get_by_test_id("difference")).to_contain_text("No difference")

    pairs = [["a", "1"], ["secret", None], ["t", "5"]]
    cases = {
        "a=1secret=Xt=5": None,
        "a=1secret=******t=5": None,
        "a=2secret=Xt=5": 2,
        "a=1secret=Xt=6": 13,
        "a=1secret=X": 10,
        "a=1t=5": 3,
        "a=1secret=Xt=5&": 14,
        "": 0,
    }
    found = await page.evaluate(
        """([pairs, cases]) => Object.keys(cases).map((pasted) => {
            const difference = window.simulator.firstDifference(pairs, pasted);
            return difference === null ? null : difference.position;
        })""",
        [pairs, cases],
    )
    assert dict(zip(cases, found, strict=True)) == cases


async def fill_the_page(sandbox: Client) -> None:
    """A user with a paid trade, a notification and an activity card, made with curl's calls."""
    user = (
        await (
            await sandbox.post(
                "/sandbox/users", data={"name": "Alice", "phone": "966500000001", "country": "+966"}
            )
        ).json()
    )["response"]
    await sandbox.post("/sandbox/open-mini-app", data={"user": user["user"]})
    open_id = user["openIds"][APPID]
    trade = {
        "outTradeNo": "order-1001",
        "amount": "1999",
        "currency": "SAR",
        "openId": open_id,
        "notifyUrl": "http://127.0.0.1:9/superpay/notify",
        "description": "Two coffees",
    }
    trade_no = (await call(sandbox, "POST", TRADE, trade))["response"]["tradeNo"]
    second = {**trade, "outTradeNo": "order-1002", "amount": "850", "description": "A croissant"}
    await call(sandbox, "POST", TRADE, second)
    await sandbox.post(f"/sandbox/trades/{trade_no}/pay", data={"result": "succeeded"})
    notify = {
        "openIds": open_id,
        "notifyType": "1",
        "navigateType": "2",
        "url": "https://shop.example/orders/1001",
        "title": "Paid",
        "text": "Order 1001 is paid",
        "language": "en_US",
    }
    await call(sandbox, "POST", NOTIFY, notify)
    for activity_id, color, title, text in (
        ("order-1001", "FFD54F", "Order", "On its way"),
        ("flight-1", "1E88E5", "Flight SV 1020", "Boarding 10:40, gate 7"),
    ):
        card = {
            "activityId": activity_id,
            "openIds": open_id,
            "color": color,
            "templateId": "1",
            "title": title,
            "text": text,
            "iconUrl": "https://shop.example/icon.png",
            "status": "1",
            "validityTime": "600",
            "language": "en_US",
        }
        await call(sandbox, "POST", ACTIVITY, card)
    await sandbox.get(DETAIL, params={**signed({}), "x": "1"})


LABELLED = """() => [...document.querySelectorAll("input, select, textarea, button")]
    .filter((control) => {
        const named = control.labels && control.labels.length
            ? [...control.labels].some((label) => label.textContent.trim())
            : (control.getAttribute("aria-label") || control.textContent).trim();
        return !named;
    })
    .map((control) => control.outerHTML.slice(0, 80))"""


async def test_the_phone_viewport(sandbox: Client, browser: Browser, tmp_path: Path) -> None:
    await fill_the_page(sandbox)
    context = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(page_url(sandbox))
    await expect(page.get_by_test_id("notification")).to_contain_text("Order 1001 is paid")
    await expect(page.get_by_test_id("activity")).to_have_count(2)
    await expect(page.get_by_test_id("trade")).to_have_count(2)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert await page.evaluate(LABELLED) == []
    shot = await page.screenshot(path=tmp_path / "phone.png")
    assert shot.startswith(b"\x89PNG")
    await page.get_by_role("heading", name="Phone screen").scroll_into_view_if_needed()
    await page.screenshot(path=tmp_path / "phone-screen.png")
    await context.close()


async def test_the_desktop_layout_and_the_readme_screenshot(
    sandbox: Client, page: Page, tmp_path: Path
) -> None:
    await fill_the_page(sandbox)
    await page.goto(page_url(sandbox))
    await expect(page.get_by_test_id("activity")).to_have_count(2)
    await expect(page.get_by_test_id("request")).to_have_count(6)
    users, phone, log = [
        await page.locator(selector).bounding_box()
        for selector in (".users", ".phone-panel", ".requests")
    ]
    assert users is not None
    assert phone is not None
    assert log is not None
    # Three columns side by side.
    assert users["x"] + users["width"] <= phone["x"] < log["x"]
    assert await page.evaluate(LABELLED) == []
    await page.set_viewport_size({"width": 1280, "height": 1060})
    await page.get_by_role("button", name="Open mini app").click()
    await expect(page.get_by_test_id("login-code")).not_to_be_empty()
    target = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "simulator.png")
    shot = await page.screenshot(path=target)
    assert shot.startswith(b"\x89PNG")


async def test_without_an_event_stream_the_page_polls(sandbox: Client, page: Page) -> None:
    await page.add_init_script("delete window.EventSource")
    await page.goto(page_url(sandbox))
    await expect(page.locator("#live")).to_have_attribute("data-state", "polling")
    await expect(page.locator("#current-user")).to_have_value(DEMO_USER.phone)
    await sandbox.post("/sandbox/users", data={"name": "Bob"})
    await expect(page.get_by_label("User on the phone")).to_contain_text("Bob (+86")
