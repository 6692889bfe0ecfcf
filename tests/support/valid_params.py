"""Valid parameters of each endpoint the doc lists: tests change a few of them."""

from __future__ import annotations

from gateway.core.endpoints import (
    ACCESS_TOKEN,
    SEND_ACTIVITY,
    SEND_NOTIFY,
    TRADE,
    TRADE_CLOSE,
    TRADE_DETAIL,
    USER_INFO,
    Endpoint,
)

# Valid parameters of each endpoint.
VALID: dict[Endpoint, dict[str, str]] = {
    ACCESS_TOKEN: {"code": "c", "grantType": "authorization_code", "scope": "user.info"},
    USER_INFO: {"accessToken": "t"},
    TRADE: {
        "outTradeNo": "o-1",
        "amount": "100",
        "currency": "USD",
        "openId": "u1",
        "notifyUrl": "https://shop.example/n",
    },
    TRADE_DETAIL: {"tradeNo": "T1"},
    TRADE_CLOSE: {"tradeNo": "T1"},
    SEND_NOTIFY: {
        "notifyType": "1",
        "openIds": "u1",
        "title": "t",
        "text": "x",
        "navigateType": "2",
        "url": "https://shop.example/o",
        "language": "en_US",
    },
    SEND_ACTIVITY: {
        "activityId": "a",
        "openIds": "u1",
        "color": "FFFFFF",
        "templateId": "1",
        "title": "t",
        "text": "x",
        "iconUrl": "https://x.example/i.png",
        "status": "1",
        "validityTime": "60",
        "language": "zh_CN",
    },
}
