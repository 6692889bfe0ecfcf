"""Hostile input against the gateway's contract: its served description and the checks that
came with it (JSON whole numbers, one-value parameters, multipart names, the 405's Allow)."""

from __future__ import annotations

import json

import pytest

from tests.abuse.conftest import Target, assert_refused, exchange, request_bytes
from tests.support.paths import TRADE

# The module's tests share a gateway, on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

NOTIFY = "/neuopenapi/notify/sendNotify"
JSON = {"Content-Type": "application/json"}


def notify(**values: object) -> bytes:
    body = {
        "notifyType": 1,
        "openIds": ["o1"],
        "title": "t",
        "text": "x",
        "navigateType": 1,
        "language": "en_US",
    }
    return json.dumps(body | values).encode()


@pytest.mark.parametrize(
    "number",
    [
        # Past the exponents Decimal holds: it raises instead of making a number.
        "1e9999999999999999999",
        "-1e-99999999999999999999",
        "1E+1000000000000000000",
        # What Decimal holds, but no Long.
        "1e999999999",
        "1e-999999999",
        "1e19",
        "0." + "0" * 500 + "1",
    ],
)
async def test_a_json_number_no_long_can_be_is_refused_not_a_500(
    target: Target, number: str
) -> None:
    body = notify().replace(b'"notifyType": 1', b'"notifyType": ' + number.encode())
    trade = (
        b'{"outTradeNo": "o1", "amount": %s, "currency": "USD", "openId": "o", ' % (number.encode())
        + b'"notifyUrl": "http://127.0.0.1:9/n"}'
    )
    async with target.under_abuse(max_growth_mb=8):
        for path, sent in ((NOTIFY, body), (TRADE, trade)):
            answer = await exchange(target.port, request_bytes("POST", path, sent, JSON))
            assert_refused(answer, 400, "validation_failed")
