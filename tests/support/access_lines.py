"""The access lines a gateway in this process writes, captured as their fields."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from gateway import logs


class AccessLines(logging.Handler):
    """The access lines written, as their fields, and an event for each."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict[str, Any]] = []
        self.written = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(getattr(record, logs.FIELDS))
        self.written.set()

    async def next_line(self) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while not self.lines:
                self.written.clear()
                await self.written.wait()
        return self.lines.pop(0)


@contextlib.contextmanager
def capturing() -> Iterator[AccessLines]:
    access = logging.getLogger("neu_gateway.access")
    handler, level = AccessLines(), access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
