"""The lean client's connections to one origin, kept alive and capped.

A Pool hands out the connection that has rested REST_S (bytes an upstream sends after an
answer close it while it rests, instead of being read as the next call's answer); Slots
bound how many connections a route holds at once (pool.max_connections), shared by the
route's origins (Origins).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import socket
import ssl

import aiohappyeyeballs
from yarl import URL

from gateway.core.errors import UpstreamDnsError, UpstreamTlsError, UpstreamUnreachable
from gateway.upstream.failures import certificate_problem, ssl_reason
from gateway.upstream.lean.connection import NEVER, Connection, Strays
from gateway.upstream.transport import Answer

# RFC 8305's recommended wait before trying the next address family.
HAPPY_EYEBALLS_DELAY_S = 0.25
# How long a connection rests in the pool before it carries another call, when the pool has
# one that has rested so long: bytes an upstream sends after an answer (a second answer, a
# body past its length) arrive while it rests and close it, instead of being read as the
# next call's answer. Without such a connection, the one that has rested longest is taken.
REST_S = 0.05
# For this long after an upstream sent bytes no call asked for, a call never gets a connection
# that has rested less than REST_S: it opens a new one (at the route's cap, in place of one);
# and before it sends on a rested one, it lets the loop read what may have come on it.
WARY_S = 300.0


class Slots:
    """How many connections a route may hold at once (0: no cap), shared by its origins."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._taken = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def take(self, deadline: float) -> None:
        """A slot, waiting for one until the loop's clock reads `deadline` if need be."""
        if self._limit == 0 or self._taken < self._limit:
            self._taken += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Given a slot just as the wait was cancelled: pass it on.
                self.give_back()
            elif waiter in self._waiters:
                # (give_back may have dropped it already, cancelled.)
                self._waiters.remove(waiter)
            raise

    def room(self, idle: int) -> bool:
        """Whether a call holding a slot may open a connection while `idle` ones are kept."""
        return self._limit == 0 or self._taken + idle <= self._limit

    def give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter
                return
        self._taken -= 1


class Pool:
    """Kept-alive connections to one origin: the most recently used of those that have
    rested REST_S, else the one that has rested longest."""

    def __init__(
        self,
        url: URL,
        tls: ssl.SSLContext | None,
        server_name: str | None,
        slots: Slots,
        keepalive_s: float,
    ) -> None:
        self._host = url.raw_host or ""
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._tls = tls
        self._server_name = server_name if tls is not None else None
        self._slots = slots
        self._keepalive_s = keepalive_s
        # Made on a request, used on its loop only. Kept, since asyncio.get_running_loop()
        # is a getpid() system call on Python 3.11: a few of them were 5% of a request.
        self._loop = asyncio.get_running_loop()
        # In the order they went back, so by idle_since.
        self._idle: list[Connection] = []
        self._strays = Strays()
        # One timer closes the connections idle past keepalive_s, not one per connection.
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self.host_header = url.host_port_subcomponent or self._host

    async def request(
        self,
        head: bytes,
        body: bytes | None,
        max_body_bytes: int,
        timeout_s: float,
        connect_s: float,
    ) -> Answer:
        """One exchange on a pooled (or new) connection, within timeout_s (TimeoutError).
        Errors that say the request never left carry unsent=True."""
        deadline = self._loop.time() + timeout_s
        await self._slots.take(deadline)
        connection: Connection | None = None
        try:
            connection = self._reuse()
            strayed_s = self._strays.last_s
            while (
                connection is not None
                and strayed_s != NEVER
                and strayed_s > self._loop.time() - WARY_S
            ):
                # Its last answer's strays have had REST_S to come, but a busy loop may not
                # have read them yet. After two turns it has polled since, and run what it
                # read (asyncio runs the callbacks queued before a poll ahead of its reads).
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                if not connection.lost:
                    break
                connection = self._reuse()
            if connection is None:
                connection = await self._connect(min(connect_s, timeout_s))
            request = head + body if body else head
            answer = await connection.exchange(request, max_body_bytes, deadline)
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.give_back()
            raise
        self._release(connection)
        return answer

    def _reuse(self) -> Connection | None:
        # The idle list is in the order the connections went back, the longest rested first.
        idle = self._idle
        now = self._loop.time()
        rested_since = now - REST_S
        fresh_since = now - self._keepalive_s
        while idle:
            if idle[-1].idle_since <= rested_since:
                # All have rested: the most recent, so the others age out and a quiet spell
                # shrinks the pool.
                connection = idle.pop()
            elif idle[0].idle_since > rested_since:
                if self._strays.last_s > now - WARY_S:
                    # This upstream sent strays lately: a new connection rather than one that
                    # answered less than REST_S ago; at the cap, in place of the last one.
                    if not self._slots.room(len(idle)):
                        idle.pop().close()
                    return None
                # The one that has rested longest, whose strays had most time to come.
                connection = idle.pop(0)
            else:
                # Some have: the most recent of those.
                index = bisect.bisect_right(idle, rested_since, key=_idle_since)
                connection = idle.pop(index - 1)
            if not connection.lost and connection.idle_since > fresh_since:
                return connection
            connection.close()
        return None

    async def _connect(self, connect_s: float) -> Connection:
        loop = self._loop
        try:
            async with asyncio.timeout(connect_s):
                addresses = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
                # Happy eyeballs (RFC 8305): an IPv6 route that drops packets costs a quarter
                # second, not the whole connect timeout. (uvloop's own connect has none.)
                sock = await aiohappyeyeballs.start_connection(
                    addresses, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S, interleave=1
                )
                try:
                    _, protocol = await loop.create_connection(
                        lambda: Connection(loop, self._tls is not None, self._strays),
                        sock=sock,
                        ssl=self._tls,
                        server_hostname=(self._server_name or self._host) if self._tls else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except socket.gaierror as exc:
            raise UpstreamDnsError(
                f"the platform's host name {self._host!r} could not be resolved (DNS)",
                unsent=True,
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamTlsError(certificate_problem(exc)) from exc
        except ssl.SSLError as exc:
            raise UpstreamTlsError(
                f"the TLS handshake with the platform failed ({ssl_reason(exc)})"
            ) from exc
        except TimeoutError:
            raise  # the caller's UpstreamTimeout, not an unreachable host
        except OSError as exc:
            raise UpstreamUnreachable(unsent=True) from exc
        return protocol

    def _release(self, connection: Connection) -> None:
        if connection.reusable and not connection.lost and not self._closed:
            loop = self._loop
            connection.idle_since = loop.time()
            self._idle.append(connection)
            if self._sweeper is None:
                self._sweeper = loop.call_later(self._keepalive_s, self._sweep)
        else:
            connection.close()
        self._slots.give_back()

    def _sweep(self) -> None:
        """Closes the connections idle for keepalive_s; comes back for the others."""
        self._sweeper = None
        loop = self._loop
        fresh_since = loop.time() - self._keepalive_s
        kept = []
        for connection in self._idle:
            if connection.lost or connection.idle_since <= fresh_since:
                connection.close()
            else:
                kept.append(connection)
        self._idle = kept
        if kept:
            oldest = min(connection.idle_since for connection in kept)
            self._sweeper = loop.call_at(oldest + self._keepalive_s, self._sweep)

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in self._idle:
            connection.close()
        self._idle.clear()


def _idle_since(connection: Connection) -> float:
    return connection.idle_since


class Origins:
    """A route's pools, one per origin, sharing the route's connection cap."""

    def __init__(
        self, tls: ssl.SSLContext, server_name: str | None, slots: Slots, keepalive_s: float
    ) -> None:
        self._tls = tls
        self._server_name = server_name
        self._slots = slots
        self._keepalive_s = keepalive_s
        self._pools: dict[tuple[str, str | None, int | None], Pool] = {}

    def pool(self, url: URL) -> Pool:
        key = (url.scheme, url.raw_host, url.port)
        pool = self._pools.get(key)
        if pool is None:
            tls = self._tls if url.scheme == "https" else None
            pool = self._pools[key] = Pool(
                url, tls, self._server_name, self._slots, self._keepalive_s
            )
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
