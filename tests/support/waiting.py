"""Waiting on a condition that has no event to await: polled often, bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

POLL_S = 0.005


async def until(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    """Returns once `condition()` holds; TimeoutError after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)  # wait-ok: polled; the condition has no event


async def until_answers(check: Callable[[], Awaitable[bool]], timeout_s: float = 5) -> None:
    """As `until`, for a condition that must be asked (of a store, a server)."""
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(POLL_S)  # wait-ok: polled; the condition has no event
