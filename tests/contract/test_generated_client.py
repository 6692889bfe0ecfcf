"""The mini app's story through a Python client generated from the description a running
gateway serves: what openapi-python-client makes of /openapi.json is enough to log a user in,
pay, close, notify, and to read the gateway's refusals as typed errors. The sandbox plays the
platform; its own controls (login, pay, inbox) are no part of the gateway's API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.generated_client import GeneratedClient, generated_client
from tests.support.processes import GatewayProcess, StartGateway, write_config
from tests.support.receiver import CallbackReceiver

pytestmark = pytest.mark.e2e
TOKEN = "orders-token-0123456789abcdef"
# A caller that may only read trades.
READER_TOKEN = "reader-token-0123456789abcdef"
PHONE = "13800138000"
# Long enough never to be what ends a wait the sandbox settles at once.
WAIT_S = 10


@pytest.fixture
async def gateway(tmp_path: Path, start_gateway: StartGateway) -> GatewayProcess:
    callers = (
        "{orders: {token_env: ORDERS_TOKEN, apps: [demo], allow: ['* /neuopenapi/*']},"
        " reader: {token_env: READER_TOKEN, apps: [demo],"
        " allow: ['GET /neuopenapi/pay/transactions/tradedetail']}}"
    )
    return await start_gateway(
        write_config(tmp_path / "gateway", callers=callers),
        env={"ORDERS_TOKEN": TOKEN, "READER_TOKEN": READER_TOKEN},
    )


@pytest.fixture
async def generated(gateway: GatewayProcess, tmp_path: Path) -> AsyncIterator[GeneratedClient]:
    async with generated_client(gateway.url, tmp_path / "client") as client:
        yield client


async def sandbox(gateway: GatewayProcess, path: str, form: dict[str, str] | None = None) -> Any:
    """A call to the sandbox's controls; its envelope's `response`."""
    async with (
        aiohttp.ClientSession() as session,
        session.request("POST" if form else "GET", gateway.sandbox_url + path, data=form) as answer,
    ):
        envelope = await answer.json()
    assert envelope["responseHeader"]["status"] == 200, envelope
    return envelope["response"]


def answered(response: Any, model: type) -> Any:
    """The parsed answer of a 200 the platform agreed to, as the description's model."""
    assert response.status_code == 200, response.content
    assert isinstance(response.parsed, model), response.parsed
    assert response.parsed.response_header.status == 200, response.content
    return response.parsed.response


async def test_the_whole_story_runs_through_the_generated_client(
    gateway: GatewayProcess, generated: GeneratedClient, receiver: CallbackReceiver
) -> None:
    api, models = generated.api, generated.models
    async with generated.client(gateway.url, TOKEN) as client:
        # login → code → accessToken, as a form.
        code = (await sandbox(gateway, "/sandbox/login", {"user": PHONE}))["code"]
        exchange = models.AccessTokenDataBody(
            code=code,
            grant_type=models.AccessTokenDataBodyGrantType.AUTHORIZATION_CODE,
            scope="user.info,user.phone",
        )
        first = await api("oauth.access_token").asyncio_detailed(client=client, body=exchange)
        token = answered(first, models.AccessTokenAnswer).access_token
        assert isinstance(token, str)
        assert token
        again = await api("oauth.access_token").asyncio_detailed(client=client, body=exchange)
        assert answered(again, models.AccessTokenAnswer).access_token == token
        assert (first.headers["X-Neu-Cache"], again.headers["X-Neu-Cache"]) == ("miss", "hit")

        # user/info by the accessToken, then by the openId the gateway keeps it under.
        by_token = await api("oauth.user_info").asyncio_detailed(client=client, access_token=token)
        user = answered(by_token, models.UserInfoAnswer)
        assert user.phone == PHONE
        by_open_id = await api("oauth.user_info").asyncio_detailed(
            client=client, open_id=user.open_id
        )
        assert answered(by_open_id, models.UserInfoAnswer).to_dict() == user.to_dict()

        # A trade as JSON, paid at the sandbox, read once it left processing.
        trade = await api("pay.trade").asyncio_detailed(
            client=client,
            body=models.TradeJsonBody(
                out_trade_no="order-1001",
                notify_url=receiver.url,
                amount=1999,
                currency=models.TradeJsonBodyCurrency.SAR,
                open_id=user.open_id,
            ),
        )
        created = answered(trade, models.TradeAnswer)
        assert created.out_trade_no == "order-1001"
        paid = await sandbox(
            gateway, f"/sandbox/trades/{created.trade_no}/pay", {"result": "succeeded"}
        )
        assert paid["transactionStatus"] == 2
        detail = await api("pay.trade_detail").asyncio_detailed(
            client=client, trade_no=created.trade_no, wait=WAIT_S
        )
        settled = answered(detail, models.TradeDetailAnswer)
        assert detail.headers["X-Neu-Wait"] == "done"
        assert (settled.trade_no, settled.transaction_status) == (created.trade_no, 2)
        assert (settled.amount, settled.currency, settled.open_id) == (1999, "SAR", user.open_id)

        # A second trade, as a form, closed instead of paid.
        second = await api("pay.trade").asyncio_detailed(
            client=client,
            body=models.TradeDataBody(
                out_trade_no="order-1002",
                notify_url=receiver.url,
                amount=500,
                currency=models.TradeDataBodyCurrency.SAR,
                open_id=user.open_id,
            ),
        )
        to_close = answered(second, models.TradeAnswer).trade_no
        closed = await api("pay.trade_close").asyncio_detailed(
            client=client, body=models.TradeCloseDataBody(trade_no=to_close)
        )
        assert answered(closed, models.PlatformAnswer) is True
        detail = await api("pay.trade_detail").asyncio_detailed(
            client=client, trade_no=to_close, wait=WAIT_S
        )
        assert answered(detail, models.TradeDetailAnswer).transaction_status == 6
        assert detail.headers["X-Neu-Wait"] == "done"

        # A notification as a form, an activity as JSON. Enums by value: the generator names
        # a string enum's members by position (navigateType "2" is VALUE_1).
        notify = await api("notify.send_notify").asyncio_detailed(
            client=client,
            body=models.SendNotifyDataBody(
                notify_type=models.SendNotifyDataBodyNotifyType(1),
                open_ids=user.open_id,
                title="Paid",
                text="Order 1001 is paid",
                navigate_type=models.SendNotifyDataBodyNavigateType("2"),
                language=models.SendNotifyDataBodyLanguage.EN_US,
                url="https://shop.example/orders/1001",
            ),
        )
        assert answered(notify, models.PlatformAnswer)
        activity = await api("activity.send_activity").asyncio_detailed(
            client=client,
            body=models.SendActivityJsonBody(
                activity_id="flight-1",
                open_ids=[user.open_id],
                color="FFFFFF",
                template_id="1",
                title="Flight",
                text="Boarding 10:40",
                icon_url="https://shop.example/i.png",
                status=models.SendActivityJsonBodyStatusType1(1),
                validity_time=600,
                language=models.SendActivityJsonBodyLanguage.AR_SA,
            ),
        )
        assert answered(activity, models.PlatformAnswer)

    inbox = await sandbox(gateway, f"/sandbox/inbox/{user.open_id}")
    assert [n["title"] for n in inbox["notifications"]] == ["Paid"]
    assert [a["activityId"] for a in inbox["activities"]] == ["flight-1"]


def refused(response: Any, model: type, status: int, code: str) -> None:
    """A refusal of the gateway's own, parsed as the description's error model for `status`."""
    assert response.status_code == status, response.content
    assert isinstance(response.parsed, model), response.parsed
    assert (response.parsed.error, response.parsed.response_header.status) == (code, status)
    assert response.parsed.response is None


async def test_the_gateways_refusals_come_back_as_the_typed_errors(
    gateway: GatewayProcess, generated: GeneratedClient
) -> None:
    api, models = generated.api, generated.models
    user_info = api("oauth.user_info")
    trade_detail = api("pay.trade_detail")

    async with generated.client(gateway.url, "not-a-token-of-anyone-here") as stranger:
        answer = await user_info.asyncio_detailed(client=stranger, access_token="any")
        refused(answer, models.Error401, 401, "unauthenticated")
        assert answer.parsed.error is models.Error401Error.UNAUTHENTICATED

    async with generated.client(gateway.url, None) as anonymous:
        answer = await user_info.asyncio_detailed(client=anonymous, access_token="any")
        refused(answer, models.Error401, 401, "unauthenticated")

    async with generated.client(gateway.url, READER_TOKEN) as reader:
        answer = await user_info.asyncio_detailed(client=reader, access_token="any")
        refused(answer, models.Error403, 403, "forbidden")

    async with generated.client(gateway.url, TOKEN) as client:
        answer = await user_info.asyncio_detailed(client=client, x_neu_app="shop", open_id="o")
        refused(answer, models.Error404, 404, "unknown_app")
        # user/info by an openId no code was exchanged for: nothing cached to sign with.
        answer = await user_info.asyncio_detailed(client=client, open_id="a-stranger")
        refused(answer, models.Error401, 401, "token_required")
        # The description's bounds are the gateway's: the client sends what it is given.
        answer = await trade_detail.asyncio_detailed(client=client, trade_no="T1", wait=0)
        refused(answer, models.Error400, 400, "validation_failed")
