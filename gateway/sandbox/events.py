"""What changed in the sandbox, for the simulator page's live view: numbered events of a few
kinds (users, trades, phone, requests, all), each waking whoever waits for news."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

KINDS = ("users", "trades", "phone", "requests", "all")
# Enough for a page that was busy for a moment; one further behind reloads everything.
KEEP = 256


class Events:
    def __init__(self) -> None:
        self.version = 0
        self.closed = False
        self._recent: deque[tuple[int, str]] = deque(maxlen=KEEP)
        self._news = asyncio.Event()

    def publish(self, kind: str) -> None:
        self.version += 1
        self._recent.append((self.version, kind))
        self._news.set()
        self._news = asyncio.Event()

    def since(self, version: int) -> list[str]:
        """The kinds that changed after `version`, each once, oldest first; ["all"] when
        that is further back than the events kept."""
        if version >= self.version:
            return []
        if not self._recent or self._recent[0][0] > version + 1:
            return ["all"]
        return list(dict.fromkeys(kind for number, kind in self._recent if number > version))

    async def wait(self, version: int, timeout_s: float) -> None:
        """Returns once there is news after `version`, on close, or after `timeout_s`."""
        if self.version > version or self.closed:
            return
        news = self._news
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await news.wait()

    def close(self) -> None:
        """Ends every wait, now and later: the sandbox is stopping."""
        self.closed = True
        self._news.set()
