"""A gateway process delivering a real payment signed: the platform (the sandbox) pays a trade
and notifies the gateway's callbacks listener, the gateway confirms it and delivers it to the
service, which verifies it with Standard Webhooks' own package; a new secret written to the
file is taken without a restart; the secret shows nowhere the gateway writes or answers."""

from __future__ import annotations

import base64
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.paths import TOKEN, USER_INFO
from tests.support.processes import (
    ENV_SECRET,
    GatewayProcess,
    StartGateway,
    neu_gateway,
    write_config,
)
from tests.support.receiver import CallbackReceiver

pytestmark = pytest.mark.e2e
FIRST = "whsec_" + base64.b64encode(b"first-key-of-the-orders-service!").decode()
SECOND = "whsec_" + base64.b64encode(b"second-key-of-the-orders-service").decode()
THIRD = "whsec_" + base64.b64encode(b"third-key-of-the-orders-service!").decode()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def pay(session: aiohttp.ClientSession, gateway: GatewayProcess, order: str) -> str:
    """A trade made through the gateway and paid at the sandbox, notified to the gateway."""
    login = await session.post(gateway.sandbox_url + "/sandbox/login", data={"user": "13800138000"})
    code = (await login.json())["response"]["code"]
    form = {"code": code, "grantType": "authorization_code", "scope": "user.info"}
    token = (await (await session.post(gateway.url + TOKEN, data=form)).json())["response"]
    info = await session.get(gateway.url + USER_INFO, params={"accessToken": token["accessToken"]})
    open_id = (await info.json())["response"]["openId"]
    trade = {
        "outTradeNo": order,
        "amount": "1999",
        "currency": "SAR",
        "openId": open_id,
        "notifyUrl": gateway.callbacks_url + "/callbacks/demo/pay",
    }
    made = await session.post(gateway.url + "/neuopenapi/pay/transactions/trade", data=trade)
    trade_no: str = (await made.json())["response"]["tradeNo"]
    paid = await session.post(
        f"{gateway.sandbox_url}/sandbox/trades/{trade_no}/pay", data={"result": "succeeded"}
    )
    assert paid.status == 200
    return trade_no


async def test_real_deliveries_verify_with_standard_webhooks_through_a_rotation(
    tmp_path: Path,
    start_gateway: StartGateway,
    receiver: CallbackReceiver,
    session: aiohttp.ClientSession,
) -> None:
    signing = tmp_path / "signing"
    signing.write_text(FIRST + "\n")
    callbacks = f"{{deliver_to: '{receiver.url}', signing_secret_file: '{signing}'}}"
    config = write_config(
        tmp_path,
        app_callbacks=callbacks,
        callbacks=f"{{listen: {{port: 0}}, store: 'sqlite:///{tmp_path}/outbox.db'}}",
        secrets="{watch_s: 0.1}",
    )
    gateway = await start_gateway(config)

    first = await pay(session, gateway, "order-1")
    await receiver.wait_accepted(1)
    headers, body = receiver.headers[0], receiver.bodies[0]
    detail = Webhook(FIRST).verify(body, headers)
    assert detail["tradeNo"] == first
    assert headers["webhook-id"] == f"{first}:2"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECOND).verify(body, headers)

    # The service learns the new secret first: the gateway signs with both until it has it.
    previous = tmp_path / "signing-previous"
    previous.write_text(FIRST + "\n")
    rotated = write_config(
        tmp_path,
        app_callbacks=callbacks.replace("}", f", signing_secret_previous_file: '{previous}'}}"),
        callbacks=f"{{listen: {{port: 0}}, store: 'sqlite:///{tmp_path}/outbox.db'}}",
        secrets="{watch_s: 0.1}",
    )
    assert rotated == config
    mark = len(gateway.log_lines)
    signing.write_text(SECOND + "\n")
    gateway.process.send_signal(signal.SIGHUP)  # the config names the previous file now
    await gateway.wait_for_log("config reloaded", since=mark)

    second = await pay(session, gateway, "order-2")
    await receiver.wait_accepted(2)
    headers, body = receiver.headers[-1], receiver.bodies[-1]
    assert Webhook(SECOND).verify(body, headers)["tradeNo"] == second
    assert Webhook(FIRST).verify(body, headers)["tradeNo"] == second

    # A new secret written to the file is in force without a signal.
    mark = len(gateway.log_lines)
    signing.write_text(THIRD + "\n")
    # (Not any line naming the file: one read between the truncation and the write finds it
    # empty, and is warned of.)
    await gateway.wait_for_log("the new callbacks.signing_secret is in force", since=mark)
    third = await pay(session, gateway, "order-3")
    await receiver.wait_accepted(3)
    headers, body = receiver.headers[-1], receiver.bodies[-1]
    assert Webhook(THIRD).verify(body, headers)["tradeNo"] == third
    with pytest.raises(WebhookVerificationError):
        Webhook(SECOND).verify(body, headers)

    everything_written = gateway.log + "".join(h["webhook-signature"] for h in receiver.headers)
    answers = [
        await (await session.get(gateway.url + path)).text()
        for path in ("/metrics", "/readyz", "/openapi.json")
    ]
    answers.append(await (await session.get(gateway.sandbox_url + "/sandbox/deliveries")).text())
    metrics = "".join(answers)
    checked = await neu_gateway("check-config", "-c", str(config), env=ENV_SECRET)
    for secret in (FIRST, SECOND, THIRD):
        for shown in (everything_written, metrics, checked.stdout + checked.stderr):
            assert secret.removeprefix("whsec_") not in shown
    assert "deliveries signed with the new and the previous secret" in checked.stdout


async def test_a_secret_file_holding_no_usable_secret_keeps_the_gateway_from_starting(
    tmp_path: Path,
) -> None:
    signing = tmp_path / "signing"
    leaked = base64.b64encode(b"too-short-a-key").decode()
    signing.write_text(f"whsec_{leaked}\n")
    config = write_config(
        tmp_path,
        app_callbacks=f"{{deliver_to: 'http://127.0.0.1:9/p', signing_secret_file: '{signing}'}}",
    )
    checked = await neu_gateway("check-config", "-c", str(config), env=ENV_SECRET)
    assert checked.status == 2
    assert "apps.demo.callbacks.signing_secret_file: its key is 15 bytes" in checked.stderr
    assert leaked not in checked.stdout + checked.stderr
