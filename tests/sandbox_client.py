"""Calling the sandbox the way a client that signs its own requests would."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiohttp.test_utils import TestClient

from tests.platform_double import APPID, SECRET, reference_sign

OTHER_APPID = "other-appid"
OTHER_SECRET = "other-secret"
SECRETS = {APPID: SECRET, OTHER_APPID: OTHER_SECRET}


class MutableClock:
    """A clock the test moves by hand, wall time and monotonic time together."""

    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000
        self._skew = 0.0
        self._moved = asyncio.Event()
        self.sleepers = 0

    def now_ms(self) -> int:
        return self.now

    def monotonic(self) -> float:
        return time.monotonic() + self._skew

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)
        self._skew += seconds
        # Sleepers whose time has now come wake at once.
        self._moved.set()
        self._moved = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        """Until `seconds` of this clock have passed: real time, or the test's advance()."""
        deadline = self.monotonic() + seconds
        self.sleepers += 1
        try:
            while (left := deadline - self.monotonic()) > 0:
                moved = self._moved
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await moved.wait()
        finally:
            self.sleepers -= 1

    async def until_sleeping(self, count: int = 1) -> None:
        """Until `count` sleeps have begun, so an advance() reaches them."""
        for _ in range(1000):
            if self.sleepers >= count:
                return
            await asyncio.sleep(0.005)  # wait-ok: polls for the condition
        raise AssertionError(f"{self.sleepers} of {count} sleepers")


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
