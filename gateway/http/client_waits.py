"""What a connection is waiting on its client for, and since when.

At limits.max_connections a listener makes way for a new connection by closing the one that
has waited longest on its client (`server.GuardedServer.opened`): idle, sending a header block,
sending a body a handler is reading, or leaving its answer unread. One busy with a request (it
waits on the platform, not the client) never gives way; when all are, the new one is refused.
"""

from __future__ import annotations

import asyncio

# What a connection waits on its client for, as the log names it.
IDLE, HEADERS, BODY, ANSWER = "idle", "sending headers", "sending a body", "reading its answer"
# A new connection refused with 503, all others being busy with requests.
REFUSED = "refused"
# Each of those as neu_gateway_connections_evicted_total's `waiting_on` label.
WAITING_ON = {IDLE: "idle", HEADERS: "headers", BODY: "body", ANSWER: "answer", REFUSED: REFUSED}

# Since when, the connection's serial (connections accepted in the same loop iteration have
# equal times: the older one goes first), and in what state.
Wait = tuple[float, int, str]


class ClientWaits:
    """One connection's waits on its client, as its handler records them."""

    def __init__(self) -> None:
        # Orders connections accepted in the same loop iteration, whose times are equal.
        self.serial = 0
        # When the connection went idle (opened, or answered its last request), and when its
        # current header block began.
        self.idle_since = 0.0
        self.headers_since = 0.0
        # The body read waiting on the client (its deadline), and since when.
        self.body_deadline: asyncio.Timeout | None = None
        self.body_since: float | None = None
        # Since when the client has left its answer unread (the transport's buffer is full).
        self.send_stalled_since: float | None = None
        # The body read was cut short to make room for a new connection.
        self.evicted = False

    def body_wait_began(self, deadline: asyncio.Timeout, now: float) -> None:
        """A handler waits for body bytes: until they come, the connection may be evicted.

        Dated from this wait, not the body's start: a body that keeps arriving is not slow.
        """
        self.body_deadline = deadline
        self.body_since = now

    def body_wait_ended(self) -> None:
        self.body_deadline = None

    def answered(self, now: float) -> None:
        """A request is answered: the connection is idle from now."""
        self.idle_since = now
        self.body_since = None

    def longest(self, *, handling: bool, pending: bool, in_headers: bool) -> Wait | None:
        """Since when the connection has been waiting on its client, given whether a handler
        runs (`handling`), a request waits for one (`pending`), and a header block is under
        way (`in_headers`); None while it waits on something else."""
        if self.send_stalled_since is not None:
            return (self.send_stalled_since, self.serial, ANSWER)
        if handling:
            if self.body_deadline is not None and self.body_since is not None:
                return (self.body_since, self.serial, BODY)
            return None
        if pending:
            return None
        if in_headers:
            return (self.headers_since, self.serial, HEADERS)
        return (self.idle_since, self.serial, IDLE)

    def cut_body_short(self, now: float) -> bool:
        """Ends the body read being waited on now (its handler answers 408, as for a stall);
        False if there is none."""
        if self.body_deadline is None:
            return False
        self.evicted = True
        self.body_deadline.reschedule(now)
        return True
