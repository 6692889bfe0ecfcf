"""Calling the sandbox the way a client that signs its own requests would."""

from __future__ import annotations

import time
from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.platform_double import APPID, SECRET, reference_sign

OTHER_APPID = "other-appid"
OTHER_SECRET = "other-secret"
SECRETS = {APPID: SECRET, OTHER_APPID: OTHER_SECRET}


def signed(params: dict[str, str], appid: str = APPID, now_ms: int | None = None) -> dict[str, str]:
    stamped = {
        **params,
        "appid": appid,
        "timestamp": str(time.time_ns() // 1_000_000 if now_ms is None else now_ms),
    }
    stamped["sign"] = reference_sign(stamped, SECRETS.get(appid, "unknown"))
    return stamped


async def call(
    client: TestClient[Any, Any],
    method: str,
    path: str,
    params: dict[str, str] | None = None,
    appid: str = APPID,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """A signed OpenAPI call; returns the envelope (the HTTP status is always 200)."""
    fields = signed(params or {}, appid, now_ms)
    if method == "GET":
        response = await client.get(path, params=fields)
    else:
        response = await client.post(path, data=fields)
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def login(
    client: TestClient[Any, Any], user: str = "alice", appid: str = APPID
) -> dict[str, Any]:
    response = await client.post("/sandbox/login", data={"user": user, "appid": appid})
    assert response.status == 200
    body: dict[str, Any] = (await response.json())["response"]
    return body
