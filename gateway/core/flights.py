"""Single flight: concurrent askers for the same key share one call, and its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SingleFlight(Generic[K, T]):
    """One Future per key while a call for it is under way; later askers await that Future."""

    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Future[T]] = {}

    async def run(self, key: K, call: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The call's result (or its exception), and whether it was shared with another asker."""
        flight = self._flights.get(key)
        if flight is not None:
            # shield: one asker giving up must not cancel the call the others wait on.
            return await asyncio.shield(flight), True
        flight = asyncio.get_running_loop().create_future()
        # Nobody may be waiting on a failed flight; reading its exception keeps asyncio quiet.
        flight.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._flights[key] = flight
        try:
            result = await call()
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(result)
            return result, False
        finally:
            del self._flights[key]
