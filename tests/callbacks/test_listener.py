"""The callbacks listener: payment callbacks from the sandbox platform verified, confirmed,
stored and delivered on to an internal receiver; everything else refused, in the gateway's
envelope, with a request id and an access line."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.callbacks.outbox import DELIVERED
from gateway.config.load import from_mapping
from gateway.core import signing
from gateway.runtime.app import create_app
from gateway.runtime.keys import CALLBACKS_URL
from tests.callbacks.conftest import (
    Sandbox,
    config_for,
    outbox_settles,
    outbox_states,
    post_callback,
    signed_callback,
)
from tests.conftest import guarded
from tests.support.paths import DETAIL, ECHO, USER_INFO
from tests.support.platform_double import SECRET
from tests.support.rawhttp import statuses
from tests.support.receiver import CallbackReceiver
from tests.support.redis_server import RedisServer

Client = TestClient[Any, Any]


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
            ("GET", DETAIL),
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


# Answered as the callers' listener answers: the error middleware's envelope, request id and
# access line.


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "neu_gateway.access"]


async def test_a_refusal_carries_the_request_id_and_gets_an_access_line(
    gateway: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "neu_gateway.access")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.app[CALLBACKS_URL] + "/callbacks/demo/pay",
            data={"outTradeNo": "x"},
            headers={"X-Request-Id": "platform-call-1"},
        ) as response,
    ):
        assert (response.status, response.headers["X-Request-Id"]) == (400, "platform-call-1")
        assert response.content_type == "application/json"
        assert await response.json() == {
            "responseHeader": {"status": 400, "msg": "tradeNo is required"},
            "response": None,
            "error": "invalid_params",
        }
    [line] = access_lines(caplog)
    assert line.startswith("request_id=platform-call-1 caller=none app=demo method=POST ")
    assert "route=/callbacks/{app}/pay status=400 " in line


async def test_an_error_is_answered_alike_on_both_listeners(gateway: Client) -> None:
    """The same refusal (a compressed body), the same answer: status, headers, envelope."""
    answers = []
    async with aiohttp.ClientSession() as session:
        for url in (
            str(gateway.make_url(ECHO)),
            gateway.app[CALLBACKS_URL] + "/callbacks/demo/pay",
        ):
            async with session.post(
                url,
                data=b"tradeNo=T",
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Content-Encoding": "gzip",
                    "X-Request-Id": "same-id",
                },
            ) as response:
                headers = {
                    name.lower(): value
                    for name, value in response.headers.items()
                    if name not in ("Date", "Server")
                }
                answers.append((response.status, headers, await response.read()))
    assert answers[0][0] == 415
    assert answers[0][1]["x-request-id"] == "same-id"
    assert answers[1] == answers[0]


async def test_an_accepted_callback_gets_a_request_id_and_an_access_line(
    gateway: Client, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = Sandbox(gateway)
    trade_no = await sandbox.new_trade(notify_url="http://127.0.0.1:9/unused")
    await sandbox.pay(trade_no)
    caplog.set_level(logging.INFO, "neu_gateway.access")
    async with (
        aiohttp.ClientSession() as session,
        session.post(sandbox.notify_url, data=signed_callback(trade_no, "2")) as response,
    ):
        assert response.status == 200
        request_id = response.headers["X-Request-Id"]
    assert len(request_id) == 32
    [line] = [line for line in access_lines(caplog) if "/callbacks/" in line]
    assert line.startswith(f"request_id={request_id} caller=none app=demo method=POST ")
    assert "status=200 " in line
    metrics = await (await gateway.get("/metrics")).text()
    assert 'app="demo",caller="none",method="POST",route="/callbacks/{app}/pay",status="200"' in (
        metrics
    )


@pytest.mark.parametrize("path", ["/healthz", "/metrics", USER_INFO])
async def test_another_path_is_404_in_the_envelope_with_a_request_id(
    gateway: Client, path: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway.app[CALLBACKS_URL] + path) as response,
    ):
        assert response.status == 404
        assert len(response.headers["X-Request-Id"]) == 32
        assert await response.json() == {
            "responseHeader": {
                "status": 404,
                "msg": "only POST /callbacks/{app}/pay is served here",
            },
            "response": None,
            "error": "not_found",
        }


async def test_a_callback_refused_at_expect_has_a_request_id_and_an_access_line(
    gateway: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "neu_gateway.access")
    port = int(gateway.app[CALLBACKS_URL].rsplit(":", 1)[1])
    head = (
        b"POST /callbacks/demo/pay HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n"
        b"Expect: 100-continue\r\nX-Request-Id: expect-1\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        async with asyncio.timeout(10):
            # Answered before the body is sent; the answer's head, then its envelope.
            answer = await reader.readuntil(b"\r\n\r\n")
            length = int(answer.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            body = json.loads(await reader.readexactly(length))
    finally:
        writer.close()
    assert statuses(answer) == [413]
    assert b"\r\nX-Request-Id: expect-1\r\n" in answer
    assert b"\r\nConnection: close\r\n" in answer
    assert body["error"] == "body_too_large"
    [line] = access_lines(caplog)
    assert line.startswith("request_id=expect-1 caller=none app=demo method=POST ")
    assert "route=/callbacks/{app}/pay status=413 " in line


@pytest.mark.parametrize(
    "expect",
    [
        pytest.param("100-continue", id="100-continue is not invited for a path not served"),
        pytest.param("something-else", id="an unknown expectation is answered as the 404"),
    ],
)
async def test_expect_on_a_path_not_served_is_answered_in_the_envelope(
    gateway: Client, caplog: pytest.LogCaptureFixture, expect: str
) -> None:
    caplog.set_level(logging.INFO, "neu_gateway.access")
    port = int(gateway.app[CALLBACKS_URL].rsplit(":", 1)[1])
    head = (
        b"POST /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n"
        + f"Expect: {expect}\r\nX-Request-Id: expect-2\r\n\r\n".encode()
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        async with asyncio.timeout(10):
            answer = await reader.readuntil(b"\r\n\r\n")
            # No 100 Continue: the body would only be read and dropped.
            assert statuses(answer) == [404], answer
            length = int(answer.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            body = json.loads(await reader.readexactly(length))
    finally:
        writer.close()
    assert b"\r\nX-Request-Id: expect-2\r\n" in answer
    assert body["error"] == "not_found"
    [line] = access_lines(caplog)
    assert line.startswith("request_id=expect-2 caller=none app=none method=POST ")
