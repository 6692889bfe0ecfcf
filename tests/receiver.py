"""An internal service's callback URL for tests: records each form POST, can fail on demand."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from aiohttp import web


class CallbackReceiver:
    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.fail_first = 0
        self.url = ""
        self._arrived = asyncio.Condition()

    def app(self, path: str = "/superpay/notify") -> web.Application:
        app = web.Application()
        app.router.add_post(path, self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        async with self._arrived:
            self.received.append(dict(parse_qsl(await request.text())))
            self._arrived.notify_all()
        if self.fail_first:
            self.fail_first -= 1
            return web.Response(status=500)
        return web.Response(text="ok")

    async def wait_for(self, count: int, timeout_s: float = 10) -> list[dict[str, str]]:
        """Returns once `count` callbacks have arrived; each arrival wakes the check."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.received) >= count), timeout_s
            )
        return self.received
