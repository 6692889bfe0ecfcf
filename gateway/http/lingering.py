"""After the listener refuses a request, what the client still sends is read and dropped.

Closed with unread bytes in its receive buffer, a socket sends a reset, and the client can lose
the answer before reading it. So a refused connection lingers: it reads and drops what comes,
and closes once the client has been quiet for LINGER_S, or at once past LINGER_MAX_S from the
answer or LINGER_BYTES in all, so that lingering costs a client's choosing nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

LINGER_S = 2.0
LINGER_MAX_S = 10.0
# What a refused connection may still send while it lingers before it is dropped.
LINGER_BYTES = 256 * 1024


class Linger:
    """One connection's lingering: whether its reads are dropped, and when it closes."""

    def __init__(self) -> None:
        # What the client sends is dropped, not parsed: a refusal is answered or queued.
        self.dropping = False
        self._bytes = 0
        self._until = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def drop_reads(self) -> None:
        """From now on what the client sends is dropped; a refusal queued behind requests
        still waits its turn, and the close waits on them, bounded by LINGER_BYTES only."""
        self.dropping = True

    def start(self, loop: asyncio.AbstractEventLoop, close: Callable[[], None]) -> None:
        """The refusal is answered: `close` is called once the client has been quiet for
        LINGER_S (or LINGER_MAX_S from now have passed)."""
        self.dropping = True
        if self._timer is None:
            self._until = loop.time() + LINGER_MAX_S
            self._timer = loop.call_later(LINGER_S, close)

    def dropped(
        self, count: int, loop: asyncio.AbstractEventLoop, close: Callable[[], None]
    ) -> bool:
        """`count` bytes came and were dropped; True when the connection is over its bounds
        and is to be cut off now. Otherwise the close is put off LINGER_S from now: a client
        still sending is not done with its request."""
        self._bytes += count
        timer = self._timer
        if self._bytes > LINGER_BYTES or (timer is not None and loop.time() > self._until):
            return True
        if timer is not None:
            # (Before it is answered, a refusal queued behind requests waits on them only.)
            timer.cancel()
            self._timer = loop.call_later(LINGER_S, close)
        return False

    def cancel(self) -> None:
        """The connection is gone: the timer (and its reference to the close) goes too."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
