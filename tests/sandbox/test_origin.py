"""A web page on another origin cannot change the sandbox, nor send its requests anywhere.

Each request here is what a browser sends for a page: the page's `Origin` and the
`Sec-Fetch-Site` the browser computed, to the sandbox's real listener on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import DEMO_USER, Settings
from tests.support.paths import DETAIL, TRADE
from tests.support.platform_double import APPID
from tests.support.receiver import CallbackReceiver
from tests.support.sandbox_client import SECRETS, call, login, signed

Client = TestClient[Any, Any]
FOREIGN = "http://attacker.example"
REFUSED = "refused: a web page on another origin may not change the sandbox"
NOT_LOOPBACK = "refused: a web page may change the sandbox only when it was opened at a loopback"


@pytest.fixture
async def sandbox(aiohttp_client: Any) -> Client:
    client: Client = await aiohttp_client(create_sandbox_app(SECRETS, Settings()))
    return client


def own_origin(sandbox: Client) -> str:
    return f"http://127.0.0.1:{sandbox.port}"


async def answer(
    sandbox: Client, method: str, target: str, headers: dict[str, str], **data: str
) -> tuple[int, dict[str, Any]]:
    response = await sandbox.request(method, target, data=data or None, headers=headers)
    return response.status, await response.json()


async def a_trade(sandbox: Client) -> str:
    opened = await login(sandbox)
    created = await call(
        sandbox,
        "POST",
        TRADE,
        {
            "outTradeNo": "o-1",
            "amount": "100",
            "currency": "USD",
            "openId": opened["openId"],
            "notifyUrl": "http://127.0.0.1:9/notify",
        },
    )
    trade_no: str = created["response"]["tradeNo"]
    return trade_no


# Every way to change the sandbox: (method, path, form fields); {trade} is a trade's number.
CHANGES = [
    pytest.param("POST", "/sandbox/users", {"name": "mallory"}, id="create a user"),
    pytest.param("POST", "/sandbox/login", {"user": "mallory", "appid": APPID}, id="log in"),
    pytest.param(
        "POST", f"/sandbox/apps/{APPID}/secret", {"secret": "stolen"}, id="replace a secret"
    ),
    pytest.param("POST", "/sandbox/faults", {"path": DETAIL, "status": "503"}, id="inject a fault"),
    pytest.param("DELETE", "/sandbox/faults", {}, id="clear faults"),
    pytest.param("POST", "/sandbox/reset", {}, id="reset everything"),
    pytest.param("POST", "/sandbox/trades/{trade}/pay", {"result": "succeeded"}, id="pay"),
    pytest.param("POST", "/sandbox/trades/{trade}/expire", {}, id="let a trade expire"),
    pytest.param(
        "POST",
        "/sandbox/open-mini-app",
        {"user": "mallory", "appid": APPID, "backend_url": "http://127.0.0.1:9/"},
        id="open the mini app",
    ),
]


@pytest.mark.parametrize(("method", "path", "fields"), CHANGES)
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": FOREIGN}, id="a foreign Origin"),
        pytest.param({"Origin": FOREIGN, "Sec-Fetch-Site": "cross-site"}, id="cross-site"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="Sec-Fetch-Site alone"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="same-site"),
        pytest.param({"Origin": "null"}, id="an opaque origin"),
    ],
)
async def test_a_page_on_another_origin_changes_nothing(
    sandbox: Client, method: str, path: str, fields: dict[str, str], headers: dict[str, str]
) -> None:
    trade_no = await a_trade(sandbox)
    before = await _state(sandbox, trade_no)
    status, body = await answer(
        sandbox, method, path.format(trade=trade_no), headers=headers, **fields
    )
    assert status == 403
    assert body["responseHeader"]["status"] == 403
    assert body["responseHeader"]["msg"].startswith(REFUSED)
    assert body["response"] is None
    assert await _state(sandbox, trade_no) == before


async def _state(sandbox: Client, trade_no: str) -> dict[str, Any]:
    """What the changes above would change, read as curl would."""
    users = await (await sandbox.get("/sandbox/users")).json()
    trade = await (await sandbox.get(f"/sandbox/trades/{trade_no}")).json()
    # Signed with the app's secret as the test knows it, and answered without a fault.
    detail = await call(sandbox, "GET", DETAIL, {"tradeNo": trade_no})
    return {
        "users": [(user["user"], user["loggedIn"]) for user in users["response"]["users"]],
        "trade": trade["response"]["detail"]["transactionStatus"],
        "detail": detail["responseHeader"],
    }


async def test_the_secret_a_foreign_page_sent_is_not_taken(sandbox: Client) -> None:
    status, _ = await answer(
        sandbox, "POST", f"/sandbox/apps/{APPID}/secret", {"Origin": FOREIGN}, secret="x"
    )
    assert status == 403
    body = await call(sandbox, "GET", DETAIL, {"tradeNo": "T"})
    assert body["responseHeader"]["msg"] == "trade 'T' not found"


async def test_a_signed_platform_call_from_a_foreign_page_is_refused(sandbox: Client) -> None:
    # The demo app's secret is public: a page could sign a trade whose callback goes anywhere.
    opened = await login(sandbox)
    fields = signed(
        {
            "outTradeNo": "o-2",
            "amount": "100",
            "currency": "USD",
            "openId": opened["openId"],
            "notifyUrl": "http://127.0.0.1:9/notify",
        }
    )
    status, body = await answer(sandbox, "POST", TRADE, {"Origin": FOREIGN}, **fields)
    # As every platform answer: HTTP 200, the outcome in the envelope.
    assert (status, body["responseHeader"]["status"]) == (200, 403)
    assert body["responseHeader"]["msg"].startswith(REFUSED)
    assert (await (await sandbox.get("/sandbox/trades")).json())["response"]["trades"] == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no browser headers (curl, scripts, tests)"),
        pytest.param({"Origin": "{own}"}, id="the sandbox's own origin"),
        pytest.param({"Origin": "{own}", "Sec-Fetch-Site": "same-origin"}, id="its own page"),
        pytest.param({"Sec-Fetch-Site": "none"}, id="made by the user, not a page"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, id="Sec-Fetch-Site alone"),
    ],
)
async def test_its_own_page_and_clients_that_are_no_page_may_change_it(
    sandbox: Client, headers: dict[str, str]
) -> None:
    given = {name: value.format(own=own_origin(sandbox)) for name, value in headers.items()}
    status, body = await answer(sandbox, "POST", "/sandbox/users", given, name="alice")
    assert status == 200, body
    assert body["response"]["name"] == "alice"


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        pytest.param("http://localhost:{port}", "127.0.0.1:{port}", id="localhost to 127.0.0.1"),
        pytest.param("http://127.0.0.1:{port}", "localhost:{port}", id="127.0.0.1 to localhost"),
        pytest.param("http://127.0.0.1:3000", "127.0.0.1:{port}", id="another port"),
        pytest.param("https://127.0.0.1:{port}", "127.0.0.1:{port}", id="another scheme"),
        pytest.param("http://127.0.0.1", "127.0.0.1:{port}", id="the default port"),
    ],
)
async def test_another_origin_on_this_machine_is_foreign_too(
    sandbox: Client, origin: str, host: str
) -> None:
    port = sandbox.port
    headers = {"Origin": origin.format(port=port), "Host": host.format(port=port)}
    status, body = await answer(sandbox, "POST", "/sandbox/users", headers, name="mallory")
    assert status == 403
    assert body["responseHeader"]["msg"].startswith(REFUSED)


async def test_localhost_is_its_own_origin_when_the_page_was_opened_there(
    sandbox: Client,
) -> None:
    port = sandbox.port
    headers = {"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"}
    status, _ = await answer(sandbox, "POST", "/sandbox/users", headers, name="alice")
    assert status == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "http://rebound.example:{port}"}, id="Origin and Host agree"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, id="same-origin"),
    ],
)
async def test_a_page_that_reached_it_by_dns_rebinding_is_refused(
    sandbox: Client, headers: dict[str, str]
) -> None:
    # The attacker's name, rebound to 127.0.0.1: the browser calls it same-origin.
    port = sandbox.port
    given = {name: value.format(port=port) for name, value in headers.items()}
    given["Host"] = f"rebound.example:{port}"
    status, body = await answer(sandbox, "POST", "/sandbox/users", given, name="mallory")
    assert status == 403
    assert body["responseHeader"]["msg"].startswith(NOT_LOOPBACK)


async def test_a_foreign_page_may_still_read(sandbox: Client) -> None:
    # Reads change nothing, and without CORS headers the browser keeps the answer from it.
    response = await sandbox.get("/sandbox/stats", headers={"Origin": FOREIGN})
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers


# backend_url


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://10.0.0.8/login", id="a private address"),
        pytest.param("http://metadata.example/latest", id="a name"),
        pytest.param("https://example.com:8443/x", id="https elsewhere"),
        pytest.param("http://127.0.0.1.nip.example/", id="a name that looks like loopback"),
        pytest.param("http://0.0.0.0:9/", id="the unspecified address"),
        pytest.param("http://2130706433/", id="an address as one number"),
    ],
)
async def test_backend_url_is_refused_off_this_machine(sandbox: Client, url: str) -> None:
    status, body = await answer(
        sandbox, "POST", "/sandbox/open-mini-app", {}, user="alice", appid=APPID, backend_url=url
    )
    assert status == 403
    assert body["responseHeader"]["msg"].startswith(
        "backend_url must be on this machine (localhost, 127.0.0.1, [::1]); another host only "
        "when the sandbox allows it (sandbox.allowed_backend_hosts, or neu-gateway sandbox "
        "--allow-backend-host)"
    )
    # Refused before anything happened: no user logged in (the demo user is there from the start).
    users = (await (await sandbox.get("/sandbox/users")).json())["response"]["users"]
    assert [(user["user"], user["loggedIn"]) for user in users] == [(DEMO_USER.phone, [])]


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://127.0.0.1:99999/",
        "http://127.0.0.1:port/",
        "ftp://127.0.0.1/",
        # Parsers differ on which @ ends the user part: no user part at all.
        "http://user@evil.example@127.0.0.1/",
        "http://user:pw@127.0.0.1/",
    ],
)
async def test_backend_url_that_is_no_url_is_400(sandbox: Client, url: str) -> None:
    status, body = await answer(
        sandbox, "POST", "/sandbox/open-mini-app", {}, user="alice", appid=APPID, backend_url=url
    )
    assert (status, body["responseHeader"]["msg"]) == (400, "backend_url must be an http(s) URL")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST"])
async def test_backend_url_on_this_machine_is_posted_to(
    sandbox: Client, receiver: CallbackReceiver, host: str
) -> None:
    url = receiver.url.replace("127.0.0.1", host)
    status, body = await answer(
        sandbox, "POST", "/sandbox/open-mini-app", {}, user="alice", appid=APPID, backend_url=url
    )
    assert status == 200, body
    assert body["response"]["backend"] == {"url": url, "httpStatus": 200}


async def test_a_host_the_sandbox_allows_is_posted_to(
    aiohttp_client: Any, receiver: CallbackReceiver
) -> None:
    # 0.0.0.0 is no loopback address, yet a connection to it reaches this machine's loopback
    # listeners: a host outside loopback that stays on this machine, for the test's sake.
    settings = Settings(allowed_backend_hosts=frozenset({"0.0.0.0"}))
    sandbox: Client = await aiohttp_client(create_sandbox_app(SECRETS, settings))
    url = receiver.url.replace("127.0.0.1", "0.0.0.0")
    status, body = await answer(
        sandbox, "POST", "/sandbox/open-mini-app", {}, user="alice", appid=APPID, backend_url=url
    )
    assert status == 200, body
    assert body["response"]["backend"] == {"url": url, "httpStatus": 200}
    assert len(receiver.received) == 1
