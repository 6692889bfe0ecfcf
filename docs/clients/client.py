"""An internal service calling the platform through neu-gateway, with Python's standard library.

It never sees the app secret and never signs: the gateway adds appid, timestamp and sign.
It names itself with its caller token and the app with X-Neu-App.

    NEU_GATEWAY_URL=http://127.0.0.1:8080 NEU_GATEWAY_TOKEN=... python3 client.py LOGIN_CODE

LOGIN_CODE is the one-time code the mini app's front end got from neu.login().
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

GATEWAY = os.environ.get("NEU_GATEWAY_URL", "http://127.0.0.1:8080")
if not GATEWAY.startswith(("http://", "https://")):
    sys.exit(f"NEU_GATEWAY_URL must be an http:// or https:// URL, not {GATEWAY!r}")
TOKEN = os.environ["NEU_GATEWAY_TOKEN"]  # this service's caller token, never the app secret
APP = os.environ.get("NEU_APP", "demo")  # the app's name in gateway.yaml, not its appid
# Where the platform posts the payment's outcome: the gateway's callbacks listener.
NOTIFY_URL = os.environ.get("NEU_NOTIFY_URL", "https://shop.example.com/superpay/notify")


class PlatformError(Exception):
    """A refusal: the gateway's own (its `error` code) or the platform's (in the envelope)."""


def call(method: str, path: str, params: dict[str, str]) -> dict[str, Any]:
    """One call through the gateway; the envelope's `response` when the platform said 200."""
    query = urllib.parse.urlencode(params)
    url, body = (f"{GATEWAY}{path}?{query}", None) if method == "GET" else (GATEWAY + path, query)
    # The scheme is checked above: urllib would open file: URLs too.
    request = urllib.request.Request(url, data=body and body.encode(), method=method)  # noqa: S310
    request.add_header("Authorization", f"Bearer {TOKEN}")
    request.add_header("X-Neu-App", APP)
    request.add_header("X-Request-Id", f"orders-{uuid.uuid4()}")  # in the gateway's access log
    if body is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            envelope = json.load(answer)
    except urllib.error.HTTPError as refused:
        # The gateway's own errors: the same envelope, with a stable `error` code.
        envelope = json.load(refused)
        raise PlatformError(f"{path}: {refused.code} {envelope.get('error')}") from None
    header = envelope["responseHeader"]
    if header["status"] != 200:
        # The platform answers its own refusals with HTTP 200 and the status in the envelope.
        raise PlatformError(f"{path}: {header['status']} {header['msg']}")
    result: dict[str, Any] = envelope["response"]
    return result


def main(code: str) -> None:
    login = call(
        "POST",
        "/neuopenapi/oauth/mini/accessToken",
        {"code": code, "grantType": "authorization_code", "scope": "user.info"},
    )
    user = call("GET", "/neuopenapi/oauth/mini/user/info", {"accessToken": login["accessToken"]})
    trade = call(
        "POST",
        "/neuopenapi/pay/transactions/trade",
        {
            "outTradeNo": f"order-{uuid.uuid4().hex[:12]}",
            "amount": "1999",
            "currency": "SAR",
            "openId": user["openId"],
            "notifyUrl": NOTIFY_URL,
        },
    )
    detail = call("GET", "/neuopenapi/pay/transactions/tradedetail", {"tradeNo": trade["tradeNo"]})
    print(
        f"openId={user['openId']} tradeNo={trade['tradeNo']} status={detail['transactionStatus']}"
    )


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except PlatformError as error:
        sys.exit(f"refused: {error}")
