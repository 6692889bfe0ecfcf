"""The one door to aiohttp's client internals: every name the gateway uses that aiohttp does
not document for this use sits here, and tests/upstream/test_aiohttp_client.py checks each
still exists and behaves as relied on, so an aiohttp release that changes one fails there.

- `ClientSession._retry_connection` (private): aiohttp sends a GET again, once, when its
  kept-alive connection breaks; no public option turns that off.
- `Connection.add_callback` (run as the connection goes back to the pool), and a pooled
  protocol's `should_close`, `len()` (answers parsed and not yet read) and `is_connected()`:
  public names, undocumented as used here, which WaryConnector stands on.
"""

from __future__ import annotations

import asyncio
import functools
import math
import weakref
from ssl import SSLContext

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from gateway.upstream.lean.pool import REST_S, WARY_S


def without_resends(session: aiohttp.ClientSession) -> None:
    """The gateway's own retries (retries.attempts, signed afresh, with backoff) are the only
    ones: aiohttp's resend of a GET on a broken kept-alive connection is turned off."""
    session._retry_connection = False


class WaryConnector(aiohttp.TCPConnector):
    """aiohttp's connector, with the lean client's rules for bytes no call asked for.

    aiohttp takes a connection back into its pool as its answer's last byte is parsed (what
    follows in the same read is parsed after), keeps parsing what comes while it rests, and
    hands it out again without looking: a second answer, or the rest of a body past its
    length, waited there, parsed, and became the next call's answer (issue #22). Its pool
    hands out the connection that has rested longest, as the lean client prefers.

    Here a connection that heard anything after its answer is closed instead of reused; and
    for WARY_S after that, or after an answer came with another behind it, a connection that
    rested less than REST_S is closed too (a new one is made), and the loop turns twice before
    a rested one is used, so that an extra answer late by less than REST_S lands while its
    connection rests."""

    def __init__(
        self,
        *,
        limit: int = 100,
        keepalive_timeout: float = 15.0,
        ttl_dns_cache: int | None = 10,
        ssl: SSLContext | bool = True,
    ) -> None:
        super().__init__(
            limit=limit, keepalive_timeout=keepalive_timeout, ttl_dns_cache=ttl_dns_cache, ssl=ssl
        )
        # (Names aiohttp's connector does not use: the adapter's test checks.)
        self._rested: weakref.WeakKeyDictionary[ResponseHandler, float] = (
            weakref.WeakKeyDictionary()
        )
        self._wary_until = -math.inf

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature, overridden
    ) -> Connection:
        loop = asyncio.get_running_loop()
        # Each pass closes a pooled connection or returns: a new one has heard nothing.
        while True:
            connection = await super().connect(req, traces, timeout)
            protocol = connection.protocol
            if protocol is None:  # pragma: no cover - aiohttp returns it attached
                return connection
            rested_since = self._rested.pop(protocol, None)
            if rested_since is not None:
                now = loop.time()
                wary = now < self._wary_until
                if wary and not heard(protocol) and now - rested_since >= REST_S:
                    try:
                        await asyncio.sleep(0)
                        await asyncio.sleep(0)
                    except BaseException:
                        connection.close()
                        raise
                if heard(protocol):
                    self._wary_until = loop.time() + WARY_S
                    connection.close()
                    continue
                if wary and now - rested_since < REST_S:
                    connection.close()
                    continue
            connection.add_callback(functools.partial(self._released, loop, protocol))
            return connection

    def _released(self, loop: asyncio.AbstractEventLoop, protocol: ResponseHandler) -> None:
        self._rested[protocol] = loop.time()
        # Run on the answer's last byte, before the rest of that read is parsed.
        loop.call_soon(self._check_behind, loop, protocol)

    def _check_behind(self, loop: asyncio.AbstractEventLoop, protocol: ResponseHandler) -> None:
        if len(protocol) > 0:
            # An answer behind the one asked for: this upstream sends extras.
            self._wary_until = loop.time() + WARY_S


def heard(protocol: ResponseHandler) -> bool:
    """Whether the connection received anything after the answer it last carried: an answer
    parsed and unread, part of one, or bytes that are none (aiohttp's `should_close`)."""
    return protocol.should_close or not protocol.is_connected()
