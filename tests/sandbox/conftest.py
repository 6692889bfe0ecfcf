"""A sandbox on a loopback port, on a clock the test moves, for the HTTP tests here."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import Settings
from tests.support.clock import MutableClock
from tests.support.sandbox_client import SECRETS

Client = TestClient[Any, Any]


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
async def sandbox(aiohttp_client: Any, clock: MutableClock) -> Client:
    """Two apps (APPID, OTHER_APPID); tokens live 2 s, callbacks are tried 3 times quickly."""
    settings = Settings(token_expire_s=2, notify_attempts=3, notify_backoff_s=0.01)
    client: Client = await aiohttp_client(create_sandbox_app(SECRETS, settings, clock))
    return client


def header(body: dict[str, Any]) -> tuple[int, str]:
    """An envelope's (responseHeader.status, responseHeader.msg)."""
    return body["responseHeader"]["status"], body["responseHeader"]["msg"]
