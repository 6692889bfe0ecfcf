"""Payment callbacks from the sandbox platform to the gateway, and on to an internal receiver."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.callbacks.outbox import DELIVERED, SqliteOutbox
from gateway.config.load import from_mapping
from gateway.core import signing
from gateway.egress.keys import BASE_URLS, WAITS
from gateway.runtime.app import create_app
from gateway.runtime.keys import CALLBACKS_URL
from gateway.upstream.waits import MAX_PAUSE_S
from tests.conftest import guarded
from tests.support.clock import MutableClock
from tests.support.platform_double import APPID, SECRET
from tests.support.receiver import CallbackReceiver
from tests.support.redis_server import RedisServer

Client = TestClient[Any, Any]
DETAIL = "/neuopenapi/pay/transactions/tradedetail"


def config_for(tmp_path: Path, receiver: CallbackReceiver, **extra: Any) -> dict[str, Any]:
    verify_sign = extra.pop("verify_sign", True)
    return {
        "apps": {
            "demo": {
                "appid": APPID,
                "secret_env": "S",
                "upstream": "sandbox",
                "callbacks": {"verify_sign": verify_sign, "deliver_to": receiver.url},
            }
        },
        "sandbox": {"listen": {"port": 0}, "notify_backoff_s": 0.05},
        "callbacks": {
            "listen": {"port": 0},
            "store": f"sqlite://{tmp_path}/outbox.db",
            "backoff_s": 0.05,
            "max_backoff_s": 0.2,
            "max_attempts": 4,
        },
        **extra,
    }


@pytest.fixture
async def gateway(aiohttp_client: Any, tmp_path: Path, receiver: CallbackReceiver) -> Client:
    config = from_mapping(config_for(tmp_path, receiver), {"S": SECRET})
    client: Client = await aiohttp_client(guarded(create_app(config)))
    return client


class Sandbox:
    def __init__(self, gateway: Client) -> None:
        self.gateway = gateway
        self.url = gateway.app[BASE_URLS]["demo"]
        self.notify_url = (
            gateway.app.get(CALLBACKS_URL, "http://127.0.0.1:9") + "/callbacks/demo/pay"
        )

    async def control(self, method: str, path: str, **data: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, data=data) as response,
        ):
            return (await response.json())["response"]

    async def new_trade(self, notify_url: str | None = None) -> str:
        login = await self.control("POST", "/sandbox/login", user="payer", appid=APPID)
        trade = {
            "outTradeNo": f"o-{time.time_ns()}",
            "amount": "100",
            "currency": "USD",
            "openId": login["openId"],
            "notifyUrl": notify_url or self.notify_url,
        }
        response = await self.gateway.post("/neuopenapi/pay/transactions/trade", data=trade)
        trade_no: str = (await response.json())["response"]["tradeNo"]
        return trade_no

    async def pay(self, trade_no: str, result: str = "succeeded") -> None:
        await self.control("POST", f"/sandbox/trades/{trade_no}/pay", result=result)

    async def detail_calls(self) -> int:
        calls: dict[str, int] = (await self.control("GET", "/sandbox/stats"))["calls"]
        return calls.get(DETAIL, 0)


def signed_callback(
    trade_no: str, status: str, secret: str = SECRET, **extra: str
) -> dict[str, str]:
    fields = {
        "tradeNo": trade_no,
        "outTradeNo": "o",
        "transactionStatus": status,
        "amount": "100",
        "currency": "USD",
        "appid": APPID,
        "timestamp": str(time.time_ns() // 1_000_000),
        **extra,
    }
    fields["sign"] = signing.sign(fields, secret)
    return fields


async def post_callback(sandbox: Sandbox, fields: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(sandbox.notify_url, data=fields) as response,
    ):
        return response.status, await response.json()


async def outbox_settles(tmp_path: Path, expected: list[tuple[str, int, str]]) -> None:
    """Waits until the outbox holds `expected`: the worker records a delivery after it."""
    for _ in range(250):
        if await outbox_states(tmp_path) == expected:
            return
        await asyncio.sleep(0.02)  # wait-ok: polls the outbox file for the condition
    assert await outbox_states(tmp_path) == expected


async def outbox_states(tmp_path: Path) -> list[tuple[str, int, str]]:
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    try:
        rows = await outbox.listing(("pending", "delivered", "dead"))
    finally:
        await outbox.close()
    return [(row.trade_no, row.status, row.state) for row in rows]


async def test_a_payment_is_delivered_once_with_the_confirmed_detail(
    gateway: Client, receiver: CallbackReceiver, tmp_path: Path
) -> None:
    sandbox = Sandbox(gateway)
    trade_no = await sandbox.new_trade()
    await sandbox.pay(trade_no)
    await receiver.wait_accepted(1)
    detail = json.loads(receiver.bodies[0])
    assert (detail["tradeNo"], detail["transactionStatus"], detail["amount"]) == (trade_no, 2, 100)
    assert receiver.headers[0]["Idempotency-Key"] == f"{trade_no}:2"
    assert receiver.headers[0]["X-Neu-Verified"] == "tradedetail"
    # The platform sends the callback again (freshly signed, as it would): nothing new.
    status, body = await post_callback(sandbox, signed_callback(trade_no, "2"))
    assert (status, body["responseHeader"]["msg"]) == (200, "already accepted")
    await outbox_settles(tmp_path, [(trade_no, 2, DELIVERED)])
    assert receiver.accepted == 1
    assert len(receiver.bodies) == 1


async def test_a_receiver_that_is_down_gets_it_once_it_is_back(
    gateway: Client, receiver: CallbackReceiver, tmp_path: Path
) -> None:
    receiver.fail_first = 2
    sandbox = Sandbox(gateway)
    trade_no = await sandbox.new_trade()
    await sandbox.pay(trade_no, "failed")
    await receiver.wait_accepted(1)
    assert len(receiver.bodies) == 3
    assert {h["Idempotency-Key"] for h in receiver.headers} == {f"{trade_no}:3"}
    await outbox_settles(tmp_path, [(trade_no, 3, DELIVERED)])


@pytest.mark.parametrize(
    ("forge", "status", "code"),
    [
        pytest.param(
            lambda t: signed_callback(t, "2", secret="not-the-secret"),
            401,
            "bad_sign",
            id="bad sign",
        ),
        pytest.param(
            lambda t: {**signed_callback(t, "2"), "timestamp": "1"},
            401,
            "bad_sign",
            id="stale timestamp",
        ),
        pytest.param(
            lambda t: signed_callback("no-such-trade", "2"),
            404,
            "unknown_trade",
            id="unknown trade",
        ),
        pytest.param(
            lambda t: signed_callback(t, "2"),
            409,
            "status_mismatch",
            id="status the platform contradicts",
        ),
        pytest.param(lambda t: {"outTradeNo": "x"}, 400, "invalid_params", id="no tradeNo"),
    ],
)
async def test_forged_callbacks_deliver_nothing(
    gateway: Client, receiver: CallbackReceiver, tmp_path: Path, forge: Any, status: int, code: str
) -> None:
    sandbox = Sandbox(gateway)
    # A processing trade, with a notifyUrl elsewhere so only the forged callback arrives.
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    got_status, body = await post_callback(sandbox, forge(trade_no))
    assert (got_status, body["error"]) == (status, code)
    assert await outbox_states(tmp_path) == []
    assert receiver.bodies == []


async def test_a_replayed_sign_is_refused(gateway: Client, tmp_path: Path) -> None:
    sandbox = Sandbox(gateway)
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    await sandbox.pay(trade_no)
    fields = signed_callback(trade_no, "2")
    assert (await post_callback(sandbox, fields))[0] == 200
    status, body = await post_callback(sandbox, fields)
    assert (status, body["error"]) == (409, "replayed")


async def test_a_trade_of_another_app_is_refused(
    aiohttp_client: Any, tmp_path: Path, receiver: CallbackReceiver
) -> None:
    document = config_for(tmp_path, receiver)
    document["apps"]["shop"] = {
        "appid": "shop-appid",
        "secret_env": "S2",
        "upstream": "sandbox",
        "callbacks": {"verify_sign": False, "deliver_to": receiver.url},
    }
    document["default_app"] = "demo"
    gateway = await aiohttp_client(
        guarded(create_app(from_mapping(document, {"S": SECRET, "S2": "shop-secret"})))
    )
    sandbox = Sandbox(gateway)
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    await sandbox.pay(trade_no)
    async with aiohttp.ClientSession() as session:
        url = gateway.app[CALLBACKS_URL] + "/callbacks/shop/pay"
        async with session.post(
            url, data={"tradeNo": trade_no, "transactionStatus": "2"}
        ) as response:
            assert (response.status, (await response.json())["error"]) == (404, "unknown_trade")


async def test_without_sign_checks_the_platform_is_still_asked(
    aiohttp_client: Any, tmp_path: Path, receiver: CallbackReceiver
) -> None:
    config = from_mapping(config_for(tmp_path, receiver, verify_sign=False), {"S": SECRET})
    gateway = await aiohttp_client(guarded(create_app(config)))
    sandbox = Sandbox(gateway)
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    unsigned = {"tradeNo": trade_no, "transactionStatus": "2"}
    assert (await post_callback(sandbox, unsigned))[1]["error"] == "status_mismatch"
    await sandbox.pay(trade_no)
    assert (await post_callback(sandbox, unsigned))[0] == 200
    await receiver.wait_accepted(1)


async def test_the_callbacks_listener_serves_nothing_else(gateway: Client) -> None:
    async with aiohttp.ClientSession() as session:
        base = gateway.app[CALLBACKS_URL]
        for method, path in (
            ("GET", "/neuopenapi/pay/transactions/tradedetail"),
            ("GET", "/healthz"),
            ("POST", "/callbacks/nope/pay"),
        ):
            async with session.request(method, base + path) as response:
                assert response.status == 404


# A real accessToken's shape (HS512, the sandbox's), as a hostile or careless platform-side
# client might put one anywhere.
JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.eyJvcGVuSWQiOiJvLTEyMyIsImNsaWVudElkIjoiZGVtby1h"
    "cHBpZCIsInNjb3BlIjoidXNlci5pbmZvIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjE3MDA2MDQ4MDB9."
    "Q2lvbGxhYm9yYXRlLXNpZ25hdHVyZS1ub3QtcmVhbC1idXQtbG9uZy1lbm91Z2gtdG8tbWF0dGVyLTAxMjM0NQ"
)


def _leaked_pieces(text: str) -> list[str]:
    """Any eight characters of the JWT in a row: what is left of it, however it was cut."""
    return [JWT[i : i + 8] for i in range(len(JWT) - 7) if JWT[i : i + 8] in text]


@pytest.mark.parametrize(
    "name",
    [pytest.param(JWT, id="a JWT"), pytest.param("x" * 40 + JWT, id="a JWT behind 40 characters")],
)
async def test_a_credential_in_the_callbacks_path_is_redacted_whole(
    gateway: Client, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.app[CALLBACKS_URL] + f"/callbacks/{name}/pay", data={"tradeNo": "t"}
        ) as response,
    ):
        assert (response.status, (await response.json())["error"]) == (404, "unknown_app")
    refusals = [r.getMessage() for r in caplog.records if "refused a payment" in r.getMessage()]
    assert refusals, caplog.text
    assert "[redacted]" in refusals[0]
    assert _leaked_pieces(caplog.text) == []


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"transactionStatus": JWT}, id="as the status"),
        pytest.param({"appid": JWT}, id="as the appid"),
        pytest.param({"appid": "x" * 40 + JWT}, id="as the appid, behind 40 characters"),
    ],
)
async def test_a_credential_in_a_callbacks_fields_is_redacted_in_the_log(
    gateway: Client, caplog: pytest.LogCaptureFixture, fields: dict[str, str]
) -> None:
    # (The answer may quote the value back: its sender sent it.)
    sandbox = Sandbox(gateway)
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    callback = signed_callback(trade_no, "2")
    callback.update(fields)
    callback["sign"] = signing.sign({k: v for k, v in callback.items() if k != "sign"}, SECRET)
    status, body = await post_callback(sandbox, callback)
    assert status in (401, 409), body
    assert "refused a payment callback" in caplog.text
    assert _leaked_pieces(caplog.text) == []


async def test_dead_after_max_attempts(
    gateway: Client, receiver: CallbackReceiver, tmp_path: Path
) -> None:
    receiver.fail_first = 100
    sandbox = Sandbox(gateway)
    trade_no = await sandbox.new_trade()
    await sandbox.pay(trade_no)
    await receiver.wait_for(4)
    await outbox_settles(tmp_path, [(trade_no, 2, "dead")])


# Waiting for a trade


async def wait_for(
    gateway: Client, trade_no: str, seconds: int
) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
    response = await gateway.get(DETAIL, params={"tradeNo": trade_no, "wait": str(seconds)})
    return response, await response.json()


async def test_wait_resolves_when_the_payer_pays(gateway: Client) -> None:
    sandbox = Sandbox(gateway)
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    waiting = asyncio.ensure_future(wait_for(gateway, trade_no, 20))
    await sandbox.pay(trade_no)
    response, body = await waiting
    assert response.headers["X-Neu-Wait"] == "done"
    assert body["response"]["transactionStatus"] == 2


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def start_held(
    aiohttp_client: Any, tmp_path: Path, receiver: CallbackReceiver, clock: MutableClock
) -> Callable[..., Awaitable[Client]]:
    """The gateway on a clock the test moves: its waits end when the test says so."""

    async def start(callbacks: bool = True) -> Client:
        document = config_for(tmp_path, receiver)
        if not callbacks:
            # No delivery worker: the trade waits are the only ones on the clock.
            del document["callbacks"]
        config = from_mapping(document, {"S": SECRET})
        client: Client = await aiohttp_client(guarded(create_app(config, clock=clock)))
        return client

    return start


@pytest.fixture
async def held_gateway(start_held: Callable[..., Awaitable[Client]]) -> Client:
    return await start_held(callbacks=False)


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(500):
        if await condition():
            return
        await asyncio.sleep(0.01)  # wait-ok: polls for the condition
    raise AssertionError("the condition never held")


def waiting_on(gateway: Client, trade_no: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        waiters: int = gateway.app[WAITS].waiters("demo", trade_no)
        return waiters == count

    return check


async def test_wait_times_out_with_status_1(held_gateway: Client, clock: MutableClock) -> None:
    sandbox = Sandbox(held_gateway)
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    waiting = asyncio.ensure_future(wait_for(held_gateway, trade_no, 1))
    # The waiter's bound and the polling loop's pause.
    await clock.until_sleeping(2)
    clock.advance(1)
    response, body = await waiting
    assert response.headers["X-Neu-Wait"] == "timeout"
    assert body["response"]["transactionStatus"] == 1


async def test_fifty_waiters_share_one_polling_loop(
    held_gateway: Client, clock: MutableClock
) -> None:
    sandbox = Sandbox(held_gateway)
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    waiting = [asyncio.ensure_future(wait_for(held_gateway, trade_no, 60)) for _ in range(50)]
    for _ in range(4):
        # Past each of the loop's pauses, however long it has grown: one poll after each.
        await clock.until_sleeping(50 + 1)
        polls = await sandbox.detail_calls()
        clock.advance(MAX_PAUSE_S)
        await until(functools.partial(_more_polls_than, sandbox, polls))
    clock.advance(60)
    results = await asyncio.gather(*waiting)
    assert {r.headers["X-Neu-Wait"] for r, _ in results} == {"timeout"}
    # One loop: a first poll and one after each pause, not fifty of each.
    assert await sandbox.detail_calls() <= 6


async def _more_polls_than(sandbox: Sandbox, polls: int) -> bool:
    return await sandbox.detail_calls() > polls


async def test_a_verified_callback_answers_waiters_at_once(
    start_held: Callable[..., Awaitable[Client]],
) -> None:
    # The clock stands still, so the loop polls once: only the callback can end the wait.
    held_gateway = await start_held()
    sandbox = Sandbox(held_gateway)
    trade_no = await sandbox.new_trade()
    waiting = [asyncio.ensure_future(wait_for(held_gateway, trade_no, 30)) for _ in range(5)]
    await until(waiting_on(held_gateway, trade_no, 5))
    await until(lambda: _more_polls_than(sandbox, 0))
    await sandbox.pay(trade_no)
    results = await asyncio.gather(*waiting)
    assert {r.headers["X-Neu-Wait"] for r, _ in results} == {"done"}
    assert {b["response"]["transactionStatus"] for _, b in results} == {2}
    # The loop's first poll, and the callback's own confirmation: nothing more.
    assert await sandbox.detail_calls() == 2


@pytest.mark.parametrize("wait", ["0", "61", "soon"])
async def test_wait_must_be_1_to_60_seconds(gateway: Client, wait: str) -> None:
    response = await gateway.get(DETAIL, params={"tradeNo": "T", "wait": wait})
    body = await response.json()
    assert (response.status, body["error"]) == (400, "validation_failed")


async def test_the_redis_outbox_delivers_once(
    aiohttp_client: Any, tmp_path: Path, receiver: CallbackReceiver, redis_server: RedisServer
) -> None:
    document = config_for(tmp_path, receiver, cache={"backend": "redis", "url": redis_server.url})
    # With the cache in Redis, the outbox is there too unless told otherwise.
    del document["callbacks"]["store"]
    gateway = await aiohttp_client(guarded(create_app(from_mapping(document, {"S": SECRET}))))
    sandbox = Sandbox(gateway)
    receiver.fail_first = 1
    trade_no = await sandbox.new_trade()
    await sandbox.pay(trade_no)
    await receiver.wait_accepted(1)
    assert (await post_callback(sandbox, signed_callback(trade_no, "2")))[1]["responseHeader"][
        "msg"
    ] == ("already accepted")
    assert receiver.accepted == 1
    assert {h["Idempotency-Key"] for h in receiver.headers} == {f"{trade_no}:2"}


async def test_an_oversized_callback_is_refused(gateway: Client) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.app[CALLBACKS_URL] + "/callbacks/demo/pay",
            data={"tradeNo": "T", "padding": "x" * 100_000},
        ) as response,
    ):
        assert (response.status, (await response.json())["error"]) == (413, "body_too_large")


async def test_identical_concurrent_callbacks_confirm_with_one_tradedetail(
    gateway: Client, tmp_path: Path
) -> None:
    sandbox = Sandbox(gateway)
    # The sandbox's own notification goes nowhere, so only the callbacks below arrive.
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/nowhere")
    await sandbox.pay(trade_no)
    before = await sandbox.detail_calls()
    fields = signed_callback(trade_no, "2")
    answers = await asyncio.gather(*(post_callback(sandbox, fields) for _ in range(50)))
    # Copies that arrive after the first was accepted are replays of its sign.
    assert {(status, body.get("error")) for status, body in answers} <= {
        (200, None),
        (409, "replayed"),
    }
    assert any(status == 200 for status, _ in answers)
    assert await sandbox.detail_calls() == before + 1
    await outbox_settles(tmp_path, [(trade_no, 2, DELIVERED)])
