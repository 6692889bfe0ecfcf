"""A mini app's whole life through the gateway with curl, the sandbox playing the platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.core.signing import verify
from tests.e2e.test_curl import curl, ok
from tests.support.platform_double import SECRET
from tests.support.processes import GatewayProcess, StartGateway, write_config
from tests.support.receiver import CallbackReceiver

pytestmark = pytest.mark.e2e
MAX_POLLS = 50


@pytest.fixture
async def gateway(tmp_path: Path, start_gateway: StartGateway) -> GatewayProcess:
    return await start_gateway(write_config(tmp_path))


async def log_in_and_create_trade(gateway: GatewayProcess, notify_url: str) -> tuple[str, str]:
    """login → code → accessToken → user/info → trade; returns (openId, tradeNo)."""
    gw = gateway.url
    code = ok(await curl(f"{gateway.sandbox_url}/sandbox/login", "-d", "user=13800138000"))["code"]
    token = ok(
        await curl(
            f"{gw}/neuopenapi/oauth/mini/accessToken",
            "-d",
            f"code={code}",
            "-d",
            "grantType=authorization_code",
            "--data-urlencode",
            "scope=user.info,user.phone",
        )
    )["accessToken"]
    user = ok(
        await curl(
            "-G",
            f"{gw}/neuopenapi/oauth/mini/user/info",
            "--data-urlencode",
            f"accessToken={token}",
        )
    )
    assert user["phone"] == "13800138000"
    trade = ok(
        await curl(
            f"{gw}/neuopenapi/pay/transactions/trade",
            "-d",
            "outTradeNo=order-1001",
            "-d",
            "amount=1999",
            "-d",
            "currency=SAR",
            "-d",
            f"openId={user['openId']}",
            "--data-urlencode",
            f"notifyUrl={notify_url}",
        )
    )
    return user["openId"], trade["tradeNo"]


async def detail_once_final(gateway: GatewayProcess, trade_no: str) -> dict[str, Any]:
    """tradedetail, again while transactionStatus is 1 (processing), as the doc asks."""
    for _ in range(MAX_POLLS):
        detail: dict[str, Any] = ok(
            await curl(
                "-G",
                f"{gateway.url}/neuopenapi/pay/transactions/tradedetail",
                "-d",
                f"tradeNo={trade_no}",
            )
        )
        if detail["transactionStatus"] != 1:
            return detail
    raise AssertionError("the trade stayed processing")


async def test_login_pay_notify_and_inbox(
    gateway: GatewayProcess, receiver: CallbackReceiver
) -> None:
    open_id, trade_no = await log_in_and_create_trade(gateway, receiver.url)
    paid = ok(
        await curl(f"{gateway.sandbox_url}/sandbox/trades/{trade_no}/pay", "-d", "result=succeeded")
    )
    assert paid["transactionStatus"] == 2
    detail = await detail_once_final(gateway, trade_no)
    assert (detail["transactionStatus"], detail["amount"], detail["currency"]) == (2, 1999, "SAR")
    [callback] = await receiver.wait_for(1)
    assert (callback["tradeNo"], callback["transactionStatus"]) == (trade_no, "2")
    assert verify(callback, SECRET)

    assert ok(
        await curl(
            f"{gateway.url}/neuopenapi/notify/sendNotify",
            "-d",
            f"openIds={open_id}",
            "-d",
            "notifyType=1",
            "-d",
            "navigateType=2",
            "--data-urlencode",
            "url=https://shop.example/orders/1001",
            "-d",
            "title=Paid",
            "--data-urlencode",
            "text=Order 1001 is paid",
            "-d",
            "language=en_US",
        )
    )
    assert ok(
        await curl(
            f"{gateway.url}/neuopenapi/activity/sendActivity",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"activityId": "flight-1", "openIds": ["' + open_id + '"], "color": "FFFFFF", '
            '"templateId": "1", "title": "Flight", "text": "Boarding 10:40", '
            '"iconUrl": "https://shop.example/i.png", "status": 1, "validityTime": 600, '
            '"language": "ar_SA"}',
        )
    )
    inbox = ok(await curl(f"{gateway.sandbox_url}/sandbox/inbox/{open_id}"))
    assert [n["title"] for n in inbox["notifications"]] == ["Paid"]
    assert [a["activityId"] for a in inbox["activities"]] == ["flight-1"]


async def test_login_and_close_instead_of_pay(
    gateway: GatewayProcess, receiver: CallbackReceiver
) -> None:
    _, trade_no = await log_in_and_create_trade(gateway, receiver.url)
    closed = await curl(
        "-X", "POST", f"{gateway.url}/neuopenapi/pay/transactions/tradeclose?tradeNo={trade_no}"
    )
    assert ok(closed) is True
    detail = await detail_once_final(gateway, trade_no)
    assert detail["transactionStatus"] == 6
    [callback] = await receiver.wait_for(1)
    assert (callback["tradeNo"], callback["transactionStatus"]) == (trade_no, "6")
    late = await curl(
        f"{gateway.sandbox_url}/sandbox/trades/{trade_no}/pay", "-d", "result=succeeded"
    )
    assert late["responseHeader"]["status"] == 409
