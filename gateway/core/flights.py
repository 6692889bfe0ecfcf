"""Single flight: concurrent askers for the same key share one call, and its outcome.

The call runs as a task of its own, so an asker that goes away (its client disconnected and
its handler was cancelled) does not take the call away from the others, and what the call
does (an exchange cached, a callback stored) is finished either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SingleFlight(Generic[K, T]):
    """One task per key while a call for it is under way; every asker awaits that task."""

    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Future[T]] = {}

    async def run(self, key: K, call: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The call's result (or its exception), and whether it was shared with another asker."""
        flight = self._flights.get(key)
        shared = flight is not None
        if flight is None:
            flight = self._flights[key] = asyncio.ensure_future(call())
            flight.add_done_callback(lambda done: self._landed(key, done))
        # shield: one asker giving up must not cancel the call the others wait on.
        return await asyncio.shield(flight), shared

    def _landed(self, key: K, flight: asyncio.Future[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        # Nobody may be waiting on a failed flight; reading its exception keeps asyncio quiet.
        if not flight.cancelled():
            flight.exception()
