"""The simulator page's side of the sandbox: its files, and the controls and event stream it
reads (users, the mini app's login, trades with their callbacks, the phone, the request log)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.core import signing
from gateway.sandbox.controls import NOTIFIER
from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import DEMO_USER, Settings
from tests.support.clock import MutableClock
from tests.support.paths import ACTIVITY, DETAIL, NOTIFY, TOKEN, TRADE, USER_INFO
from tests.support.platform_double import APPID, SECRET
from tests.support.receiver import CallbackReceiver
from tests.support.sandbox_client import OTHER_APPID, SECRETS, call, login, signed

Client = TestClient[Any, Any]


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
async def sandbox(aiohttp_client: Any, clock: MutableClock) -> Client:
    settings = Settings(notify_attempts=3, notify_backoff_s=0.01)
    client: Client = await aiohttp_client(create_sandbox_app(SECRETS, settings, clock))
    return client


async def control(sandbox: Client, method: str, path: str, **params: str) -> Any:
    """A control call that must succeed; its `response`."""
    if method == "GET":
        answer = await sandbox.get(path, params=params)
    else:
        answer = await sandbox.post(path, data=params)
    body = await answer.json()
    assert answer.status == 200, body
    return body["response"]


async def refused(sandbox: Client, path: str, **params: str) -> tuple[int, str]:
    answer = await sandbox.post(path, data=params)
    body = await answer.json()
    assert answer.status == body["responseHeader"]["status"]
    return answer.status, body["responseHeader"]["msg"]


async def new_trade(sandbox: Client, open_id: str, notify_url: str, out_trade_no: str) -> str:
    params = {
        "outTradeNo": out_trade_no,
        "amount": "1999",
        "currency": "SAR",
        "openId": open_id,
        "notifyUrl": notify_url,
    }
    body = await call(sandbox, "POST", TRADE, params)
    trade_no: str = body["response"]["tradeNo"]
    return trade_no


# The page and its files


async def test_the_page_and_its_two_files_are_served_with_a_strict_policy(sandbox: Client) -> None:
    page = await sandbox.get("/")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    assert 'src="/static/app.js"' in html
    assert 'href="/static/app.css"' in html
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    # Not even an activity's icon is fetched from elsewhere: the page draws its own.
    assert "img-src 'self' data:;" in policy
    for name, content_type in (("app.js", "text/javascript"), ("app.css", "text/css")):
        asset = await sandbox.get(f"/static/{name}")
        assert (asset.status, asset.content_type) == (200, content_type)
    assert (await sandbox.get("/static/index.html")).status == 404
    assert (await sandbox.get("/static/..%2fserver.py")).status == 404


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """Works offline: no CDN, no web font, no remote script."""
    from gateway.sandbox.simulator import STATIC

    for path in STATIC.iterdir():
        text = path.read_text()
        assert "//cdn" not in text
        assert "@import" not in text
        assert '<script src="http' not in text


async def test_the_gateway_listener_never_serves_the_page(aiohttp_client: Any) -> None:
    from gateway.runtime.app import create_app
    from tests.conftest import gateway_config, guarded

    config = gateway_config("sandbox", sandbox={"listen": {"port": 0}})
    gateway = await aiohttp_client(guarded(create_app(config)))
    for path in ("/", "/static/app.js", "/sandbox/users", "/sandbox/events"):
        assert (await gateway.get(path)).status == 404, path


# Users and the mini app's login


async def test_a_user_made_on_the_page_is_what_user_info_tells(sandbox: Client) -> None:
    made = await control(
        sandbox, "POST", "/sandbox/users", name="Alice", phone="+966500000001", country="966"
    )
    assert made["user"] == "966500000001"
    assert (made["name"], made["phone"], made["country"]) == ("Alice", "966500000001", "+966")
    assert made["loggedIn"] == []
    opened = await control(
        sandbox, "POST", "/sandbox/open-mini-app", user=made["user"], appid=APPID
    )
    assert opened["openId"] == made["openIds"][APPID]
    token = await call(
        sandbox,
        "POST",
        TOKEN,
        {
            "code": opened["code"],
            "grantType": "authorization_code",
            "scope": "user.info,user.phone",
        },
    )
    info = await call(sandbox, "GET", USER_INFO, {"accessToken": token["response"]["accessToken"]})
    assert info["response"]["nickName"] == "Alice"
    assert info["response"]["phone"] == "966500000001"
    assert info["response"]["country"] == "+966"

    listed = await control(sandbox, "GET", "/sandbox/users")
    [demo, alice] = listed["users"]
    assert (demo["user"], alice["user"]) == (DEMO_USER.phone, made["user"])
    assert alice["loggedIn"] == [APPID]
    assert set(alice["openIds"]) == {APPID, OTHER_APPID}
    assert isinstance(listed["now"], int)


async def test_users_are_listed_in_the_order_first_seen_and_a_phone_again_updates(
    sandbox: Client,
) -> None:
    await control(sandbox, "POST", "/sandbox/users", name="Bob")
    await login(sandbox, "13900139000")
    await control(sandbox, "POST", "/sandbox/users", name="Carol", phone="13900139000")
    await control(sandbox, "POST", "/sandbox/users", name="Zhang Wei", phone=DEMO_USER.phone)
    users = (await control(sandbox, "GET", "/sandbox/users"))["users"]
    assert [(u["user"], u["name"], u["country"]) for u in users] == [
        (DEMO_USER.phone, "Zhang Wei", "+86"),
        ("Bob", "Bob", "+86"),
        ("13900139000", "Carol", "+86"),
    ]


async def test_a_fresh_sandbox_and_a_reset_one_have_the_demo_user_to_open_the_mini_app_with(
    sandbox: Client,
) -> None:
    for _ in range(2):
        [demo] = (await control(sandbox, "GET", "/sandbox/users"))["users"]
        assert (demo["user"], demo["name"], demo["loggedIn"]) == (
            DEMO_USER.phone,
            DEMO_USER.name,
            [],
        )
        opened = await control(
            sandbox, "POST", "/sandbox/open-mini-app", user=demo["user"], appid=APPID
        )
        assert opened["openId"] == demo["openIds"][APPID]
        await control(sandbox, "POST", "/sandbox/users", name="Bob")
        await control(sandbox, "POST", "/sandbox/reset")


async def test_a_user_refused_hears_why(sandbox: Client) -> None:
    """The messages are the world's (tests/sandbox/test_world_users.py); here: they arrive."""
    assert await refused(sandbox, "/sandbox/users", name="Al", phone="12ab") == (
        400,
        "phone must be 6 to 15 digits, optionally after a +",
    )


async def test_open_mini_app_gives_a_code_that_expires_and_posts_it_to_the_backend(
    sandbox: Client, receiver: CallbackReceiver, clock: MutableClock
) -> None:
    opened = await control(
        sandbox,
        "POST",
        "/sandbox/open-mini-app",
        user="alice",
        appid=APPID,
        backend_url=receiver.url,
    )
    assert opened["expiresAt"] == clock.now + 300_000
    assert opened["backend"] == {"url": receiver.url, "httpStatus": 200}
    assert receiver.received == [{"code": opened["code"]}]


async def test_open_mini_app_reports_a_backend_that_does_not_answer(sandbox: Client) -> None:
    closed = "http://127.0.0.1:9/login"  # the discard port: nothing listens
    opened = await control(
        sandbox, "POST", "/sandbox/open-mini-app", user="alice", appid=APPID, backend_url=closed
    )
    assert opened["backend"]["url"] == closed
    assert opened["backend"]["error"]
    assert "httpStatus" not in opened["backend"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user": "alice", "backend_url": "file:///etc/passwd"}, "backend_url must be"),
        ({"user": "alice"}, "appid is required"),
        ({"user": " ", "appid": APPID}, "user is required"),
    ],
    ids=["not a web URL", "no appid with two apps", "no user"],
)
async def test_open_mini_app_rejections(
    sandbox: Client, fields: dict[str, str], message: str
) -> None:
    status, msg = await refused(sandbox, "/sandbox/open-mini-app", **fields)
    assert status == 400
    assert message in msg


# Cashier


async def test_trades_of_a_user_newest_first_across_apps(
    sandbox: Client, receiver: CallbackReceiver
) -> None:
    alice = (await login(sandbox, "alice"))["openId"]
    alice_other = (await login(sandbox, "alice", OTHER_APPID))["openId"]
    bob = (await login(sandbox, "bob"))["openId"]
    first = await new_trade(sandbox, alice, receiver.url, "order-1")
    await new_trade(sandbox, bob, receiver.url, "order-2")
    body = await call(
        sandbox,
        "POST",
        TRADE,
        {
            "outTradeNo": "order-3",
            "amount": "5",
            "currency": "USD",
            "openId": alice_other,
            "notifyUrl": receiver.url,
        },
        appid=OTHER_APPID,
    )
    third = body["response"]["tradeNo"]
    listed = await control(sandbox, "GET", "/sandbox/trades", user="alice")
    assert [t["detail"]["tradeNo"] for t in listed["trades"]] == [third, first]
    assert listed["trades"][1]["notifyUrl"] == receiver.url
    by_open_id = await control(sandbox, "GET", "/sandbox/trades", openId=bob)
    assert [t["detail"]["outTradeNo"] for t in by_open_id["trades"]] == ["order-2"]
    everything = await control(sandbox, "GET", "/sandbox/trades")
    assert len(everything["trades"]) == 3


async def test_let_expire_ends_the_trade_as_its_time_running_out_would(
    sandbox: Client, receiver: CallbackReceiver, clock: MutableClock
) -> None:
    trade_no = await new_trade(
        sandbox, (await login(sandbox, "alice"))["openId"], receiver.url, "order-1"
    )
    expired = await control(sandbox, "POST", f"/sandbox/trades/{trade_no}/expire")
    assert (expired["transactionStatus"], expired["failReasonType"]) == (4, 21)
    assert expired["timeExpire"] == clock.now
    [callback] = await receiver.wait_for(1)
    assert callback["transactionStatus"] == "4"
    detail = (await call(sandbox, "GET", DETAIL, {"tradeNo": trade_no}))["response"]
    assert detail["transactionStatus"] == 4
    assert await refused(sandbox, f"/sandbox/trades/{trade_no}/expire") == (
        409,
        "trade is expired; only a processing trade can be expired",
    )
    assert (await refused(sandbox, "/sandbox/trades/nope/expire"))[0] == 404


async def test_callback_attempts_say_when_the_next_retry_is_and_when_delivery_gave_up(
    sandbox: Client, receiver: CallbackReceiver
) -> None:
    receiver.fail_first = 10
    trade_no = await new_trade(
        sandbox, (await login(sandbox, "alice"))["openId"], receiver.url, "order-1"
    )
    await sandbox.post(f"/sandbox/trades/{trade_no}/pay", data={"result": "failed"})
    await sandbox.app[NOTIFIER].idle()
    [view] = (await control(sandbox, "GET", "/sandbox/trades", user="alice"))["trades"]
    attempts = view["notifications"]
    assert [(a["attempt"], a["httpStatus"], a["transactionStatus"]) for a in attempts] == [
        (1, 500, 3),
        (2, 500, 3),
        (3, 500, 3),
    ]
    assert [a["nextAttemptAt"] - a["at"] for a in attempts[:2]] == [10, 20]
    assert "nextAttemptAt" not in attempts[2]
    assert [a.get("gaveUp", False) for a in attempts] == [False, False, True]


# The phone


async def test_the_phone_shows_notifications_newest_first_and_live_cards(
    sandbox: Client, clock: MutableClock
) -> None:
    alice = (await login(sandbox, "alice"))["openId"]
    for title in ("First", "Second"):
        await call(
            sandbox,
            "POST",
            NOTIFY,
            {
                "openIds": alice,
                "notifyType": "1",
                "navigateType": "1",
                "link": "pages/orders",
                "title": title,
                "text": "t",
                "language": "en_US",
            },
        )
        clock.advance(1)
    card = {
        "activityId": "flight-1",
        "openIds": alice,
        "color": "FFFFFF",
        "templateId": "1",
        "title": "Flight",
        "text": "Boarding",
        "iconUrl": "https://shop.example/i.png",
        "status": "1",
        "validityTime": "60",
        "language": "en_US",
    }
    await call(sandbox, "POST", ACTIVITY, card)
    phone = await control(sandbox, "GET", "/sandbox/phone", user="alice")
    assert [n["title"] for n in phone["notifications"]] == ["Second", "First"]
    assert [n["key"] for n in phone["notifications"]] == [f"{alice}:1", f"{alice}:0"]
    assert phone["notifications"][0]["link"] == "pages/orders"
    [activity] = phone["activities"]
    assert (activity["key"], activity["expiresAt"]) == (f"{APPID}:flight-1", clock.now + 60_000)
    await call(sandbox, "POST", ACTIVITY, {**card, "status": "0"})
    assert (await control(sandbox, "GET", "/sandbox/phone", user="alice"))["activities"] == []
    assert (await sandbox.get("/sandbox/phone")).status == 400


# The request log


async def test_the_request_log_has_every_call_newest_first_with_its_verdict(
    sandbox: Client,
) -> None:
    code = (await login(sandbox, "alice"))["code"]
    exchange = {"code": code, "grantType": "authorization_code", "scope": "user.info"}
    await call(sandbox, "POST", TOKEN, exchange)
    await call(sandbox, "POST", TOKEN, exchange)
    await sandbox.get("/neuopenapi/no/such")
    entries = (await control(sandbox, "GET", "/sandbox/requests"))["requests"]
    assert [(e["endpoint"], e["verdict"], e["status"]) for e in entries] == [
        ("/neuopenapi/no/such", "refused", 404),
        (TOKEN, "refused", 400),
        (TOKEN, "accepted", 200),
    ]
    assert entries[1]["msg"].startswith("invalid code: it was already exchanged")
    accepted = entries[2]
    assert accepted["method"] == "POST"
    assert accepted["params"]["sign"] == "******"
    assert accepted["params"]["code"] == code
    assert accepted["params"]["appid"] == APPID
    assert accepted["canonical"] is None
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)


async def test_a_sign_rejection_logs_what_the_platform_signed_with_the_secret_masked(
    aiohttp_client: Any,
) -> None:
    # explain off: the caller is not told, but the page on the sandbox's own listener is.
    sandbox = await aiohttp_client(create_sandbox_app(SECRETS, Settings(explain=False)))
    params = {**signed({"tradeNo": "T1"}), "tradeNo": "T2", "note": f"x{SECRET}y"}
    answer = await sandbox.get(DETAIL, params=params)
    assert (await answer.json())["responseHeader"]["msg"] == (
        "sign error: the sign does not match the parameters"
    )
    [entry] = (await control(sandbox, "GET", "/sandbox/requests"))["requests"]
    assert entry["verdict"] == "refused"
    assert entry["params"]["note"] == "x******y"
    expected = signing.canonical_string({**params, "note": "x******y"}, signing.SECRET_MASK)
    assert entry["canonical"] == expected
    assert entry["canonical"].startswith(f"appid={APPID}note=x******ysecret=******timestamp=")
    assert entry["signedPairs"][2] == ["secret", None]
    assert SECRET not in json.dumps(entry)


async def test_a_secret_sent_on_the_wire_never_reaches_the_log(sandbox: Client) -> None:
    await sandbox.get(DETAIL, params={**signed({"tradeNo": "T"}), "secret": SECRET})
    # explain is on: the answer tells the caller what was signed, values as sent; the log masks.
    await sandbox.get(
        DETAIL, params={**signed({"tradeNo": "T"}), "Secret": "leaked", "note": SECRET}
    )
    entries = (await control(sandbox, "GET", "/sandbox/requests"))["requests"]
    assert [e["params"].get("Secret", e["params"].get("secret")) for e in entries] == [
        "******",
        "******",
    ]
    assert SECRET not in json.dumps(entries)
    assert "leaked" not in json.dumps(entries)


async def test_the_request_log_is_bounded_and_reset_clears_it(sandbox: Client) -> None:
    for _ in range(205):
        await sandbox.get("/neuopenapi/no/such")
    entries = (await control(sandbox, "GET", "/sandbox/requests"))["requests"]
    assert len(entries) == 200
    assert entries[0]["id"] == 205
    await sandbox.post("/sandbox/reset")
    assert (await control(sandbox, "GET", "/sandbox/requests"))["requests"] == []


async def test_a_call_a_fault_answers_is_logged_as_a_fault(sandbox: Client) -> None:
    await sandbox.post("/sandbox/faults", data={"path": DETAIL, "status": "503", "times": "1"})
    await sandbox.post("/sandbox/faults", data={"path": TOKEN, "delay_s": "0.01", "times": "1"})
    await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))
    await sandbox.post(TOKEN, data=signed({"code": "c", "grantType": "x", "scope": "user.info"}))
    entries = (await control(sandbox, "GET", "/sandbox/requests"))["requests"]
    assert [(e["endpoint"], e["verdict"], e["status"]) for e in entries] == [
        (TOKEN, "refused", 400),
        (DETAIL, "fault", 503),
    ]
    assert entries[1]["msg"] == "fault injected by /sandbox/faults: HTTP 503"


# Live updates


async def read_event(stream: aiohttp.StreamReader) -> tuple[str, dict[str, Any]]:
    """The next event's name and data (comments skipped)."""
    name, data = "", ""
    while line := (await stream.readline()).decode():
        if line == "\n" and name:
            return name, json.loads(data)
        if line.startswith("event: "):
            name = line[len("event: ") :].strip()
        elif line.startswith("data: "):
            data = line[len("data: ") :].strip()
    raise AssertionError("the stream ended")


async def test_events_say_what_changed(sandbox: Client, receiver: CallbackReceiver) -> None:
    stream = await sandbox.get("/sandbox/events")
    assert stream.content_type == "text/event-stream"
    name, hello = await read_event(stream.content)
    assert name == "hello"
    await control(sandbox, "POST", "/sandbox/users", name="Alice")
    name, change = await read_event(stream.content)
    assert (name, change["kinds"]) == ("change", ["users"])
    assert change["version"] > hello["version"]
    await sandbox.get("/neuopenapi/no/such")
    assert (await read_event(stream.content))[1]["kinds"] == ["requests"]
    stream.close()


async def test_an_open_event_stream_does_not_hold_the_sandbox_stop() -> None:
    runner = web.AppRunner(create_sandbox_app({APPID: SECRET}), shutdown_timeout=30)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port, *_ = runner.addresses[0]
    async with aiohttp.ClientSession() as session:
        stream = await session.get(f"http://{host}:{port}/sandbox/events")
        assert (await read_event(stream.content))[0] == "hello"
        async with asyncio.timeout(5):
            await runner.cleanup()
        assert await stream.content.read() == b""
