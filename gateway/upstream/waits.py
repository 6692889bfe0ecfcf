"""Waiting for a trade's outcome: one polling loop per trade, however many callers wait.

The doc asks a backend to poll tradedetail while transactionStatus is 1 (processing). A caller
that adds `wait=N` to tradedetail gets the gateway to do it: the first waiter starts a loop
that polls with growing pauses; later waiters share it; a verified payment callback for the
trade ends the wait at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.core.clock import Clock, within
from gateway.core.errors import GatewayError, UpstreamTimeout
from gateway.core.platform import PROCESSING
from gateway.upstream.details import answer_detail
from gateway.upstream.transport import Answer

FIRST_PAUSE_S = 0.5
PAUSE_GROWTH = 1.5
MAX_PAUSE_S = 5.0

Fetch = Callable[[], Awaitable[Answer]]


@dataclass
class _Watch:
    deadline: float
    final: asyncio.Future[Answer] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    latest: Answer | None = None
    waiters: int = 0
    task: asyncio.Task[None] | None = None


def is_settled(answer: Answer) -> bool:
    """The platform gave a final status, or an answer that waiting will not change."""
    detail = answer_detail(answer)
    return detail is None or detail.get("transactionStatus") != PROCESSING


class TradeWaits:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._watches: dict[tuple[str, str], _Watch] = {}

    async def wait(
        self, app: str, trade_no: str, seconds: float, fetch: Fetch
    ) -> tuple[Answer, bool]:
        """The latest tradedetail answer, and whether the trade settled within `seconds`."""
        key = (app, trade_no)
        deadline = self._clock.monotonic() + seconds
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch(deadline)
        watch.deadline = max(watch.deadline, deadline)
        if not watch.final.done() and (watch.task is None or watch.task.done()):
            # The first waiter, or one that came as the last loop reached its own deadline.
            watch.task = asyncio.get_running_loop().create_task(self._poll(watch, fetch))
        watch.waiters += 1
        try:
            return await within(self._clock, seconds, asyncio.shield(watch.final)), True
        except TimeoutError:
            if watch.latest is None:
                # Not one answer from the platform in the time the caller gave.
                raise UpstreamTimeout(
                    f"the platform did not answer tradedetail within the wait ({seconds:g} s)"
                ) from None
            return watch.latest, False
        finally:
            watch.waiters -= 1
            if watch.waiters == 0 and self._watches.get(key) is watch:
                del self._watches[key]
                if watch.task is not None:
                    watch.task.cancel()

    def waiters(self, app: str, trade_no: str) -> int:
        """How many callers wait on the trade now."""
        watch = self._watches.get((app, trade_no))
        return 0 if watch is None else watch.waiters

    def answered(self, app: str, trade_no: str) -> bool:
        """Whether the platform has answered a poll of the trade waited on: until then a wait
        that ends is an upstream timeout, not the latest detail."""
        watch = self._watches.get((app, trade_no))
        return watch is not None and watch.latest is not None

    def settle(self, app: str, trade_no: str, answer: Answer) -> None:
        """A verified callback's tradedetail answer: every waiter on the trade gets it now."""
        watch = self._watches.get((app, trade_no))
        if watch is not None and not watch.final.done():
            watch.latest = answer
            watch.final.set_result(answer)

    async def _poll(self, watch: _Watch, fetch: Fetch) -> None:
        pause = FIRST_PAUSE_S
        while not watch.final.done():
            try:
                answer = await fetch()
            except GatewayError as exc:
                if watch.latest is None:
                    # Nothing to show yet: the waiters get the error rather than a timeout.
                    watch.final.set_exception(exc)
                    watch.final.exception()
                    return
            else:
                watch.latest = answer
                if is_settled(answer) and not watch.final.done():
                    watch.final.set_result(answer)
                    return
            remaining = watch.deadline - self._clock.monotonic()
            if remaining <= 0:
                return
            await self._clock.sleep(min(pause, remaining))
            pause = min(pause * PAUSE_GROWTH, MAX_PAUSE_S)
