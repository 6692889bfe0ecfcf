"""An internal service's callback URL for tests: records each form POST, can fail on demand."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

RECEIVE_PATH = "/receive"


class CallbackReceiver:
    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.accepted = 0
        self.fail_first = 0
        self.url = ""
        self._arrived = asyncio.Condition()

    def app(self, path: str = RECEIVE_PATH) -> web.Application:
        app = web.Application()
        app.router.add_post(path, self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self._arrived:
            self.bodies.append(body)
            self.headers.append(dict(request.headers))
            self.received.append(dict(parse_qsl(body.decode("utf-8", "replace"))))
            failing = self.fail_first > 0
            if failing:
                self.fail_first -= 1
            else:
                self.accepted += 1
            self._arrived.notify_all()
        if failing:
            return web.Response(status=500)
        return web.Response(text="ok")

    async def wait_accepted(self, count: int, timeout_s: float = 15) -> None:
        """Returns once `count` requests were answered 2xx."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: self.accepted >= count), timeout_s
            )

    async def wait_for(self, count: int, timeout_s: float = 10) -> list[dict[str, str]]:
        """Returns once `count` callbacks have arrived; each arrival wakes the check."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.received) >= count), timeout_s
            )
        return self.received


@pytest.fixture
async def receiver(aiohttp_server: Any) -> CallbackReceiver:
    """A receiving service on loopback; `receiver.url` is where to send."""
    receiver = CallbackReceiver()
    server = await aiohttp_server(receiver.app())
    receiver.url = str(server.make_url(RECEIVE_PATH))
    return receiver
