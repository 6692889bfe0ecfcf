"""A lean HTTP/1.1 client for the direct route to the platform.

Signed calls to one upstream need little of a general client: no cookies, redirects, proxies
or streamed bodies, just a keep-alive pool, a strict parser (httptools, llhttp as Node.js
uses it), TLS and bounded reads. Doing only that costs a fraction of aiohttp's client per
call. Calls through a forward proxy, and multipart uploads, still go through aiohttp.

Its errors are the gateway's own, but for TimeoutError and ConnectionLost (no answer came),
which the caller names: it knows the call's deadline and the app's TLS setting.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import math
import socket
import ssl
import zlib
from dataclasses import dataclass

import aiohappyeyeballs
import httptools
from multidict import CIMultiDict
from yarl import URL

from gateway.core.errors import (
    UpstreamBadResponse,
    UpstreamDnsError,
    UpstreamTlsError,
    UpstreamUnreachable,
)

# An answer's status line and headers, at most; aiohttp's client allows 8 KiB per line.
MAX_HEAD_BYTES = 64 * 1024
# What the gateway can decode; the platform answers plain JSON, compressed or not.
ACCEPT_ENCODING = "gzip, deflate"
USER_AGENT = "neu-gateway"
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


# Made per request: slots, and not frozen, whose __init__ costs four times as much.
@dataclass(slots=True)
class Answer:
    status: int
    headers: CIMultiDict[str]
    body: bytes


class ConnectionLost(Exception):
    """The connection ended before any of the answer came; its cause, if any, is chained."""

    def __init__(self, message: str, reused: bool) -> None:
        super().__init__(message)
        # It had carried answers before: whatever ended it, its handshake was fine.
        self.reused = reused


_NEVER = -math.inf


class Strays:
    """When a pool's connection last received bytes that no call asked for."""

    __slots__ = ("last_s",)

    def __init__(self) -> None:
        self.last_s = _NEVER


class _Connection(asyncio.Protocol):
    """One connection, one exchange at a time; the parser's callbacks fill the answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tls: bool, strays: Strays) -> None:
        self._loop = loop
        self._tls = tls
        self._strays = strays
        # None once the connection is lost.
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        # Closed or closing: never handed to another call.
        self.lost = False
        self.reusable = False
        # Bytes came that no call asked for: behind an answer, or while it rested.
        self.stray = False
        # When it went back to the pool (the loop's clock).
        self.idle_since = 0.0
        self._answered = False
        self._waiter: asyncio.Future[Answer] | None = None
        self._max_body_bytes = 0
        self._max_seen = 0
        self._reset()

    def _reset(self) -> None:
        self._headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] = []
        self._seen = self._head_bytes = self._body_bytes = self._status = 0
        self._headers_done = self._interim = self._until_close = False

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if self._waiter is None or self._waiter.done() or parser is None:
            self._strayed()
            return
        self._seen += len(data)
        try:
            if self._seen > self._max_seen:
                # Framing (chunk sizes, extensions, trailers) far beyond the body allowed.
                raise UpstreamBadResponse(too_large(self._max_body_bytes))
            parser.feed_data(data)
            if not self._headers_done and self._seen > MAX_HEAD_BYTES:
                # Checked on the bytes as well as on whole lines: a line may never end.
                raise _head_too_large()
        except httptools.HttpParserCallbackError as exc:
            # A callback refused the answer (its size, a 101): that refusal is the error.
            refusal = exc.__context__
            try:
                self._refuse(
                    refusal if isinstance(refusal, UpstreamBadResponse) else _not_http(exc)
                )
            finally:
                # Its traceback holds this frame: a cycle that would keep the connection and
                # the body read so far (up to max_response_bytes) for the collector.
                del refusal
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._refuse(_not_http(exc))
        except UpstreamBadResponse as exc:
            self._refuse(exc)

    def eof_received(self) -> bool:
        # An answer without a length ends when the connection does (RFC 9112 section 6.3).
        if self._waiter is not None and not self._waiter.done() and self._until_close:
            self._complete(reusable=False)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        try:
            self._answer_lost(exc)
        finally:
            # The parser calls back into this connection, and the transport holds it: cycles
            # that would wait for the garbage collector (see gateway/runtime/heap.py). Nothing is
            # read or written once the connection is lost.
            self._parser = None
            self.transport = None

    def _answer_lost(self, exc: Exception | None) -> None:
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done:
            # The answer began and was cut short: what came cannot be relayed.
            self._waiter.set_exception(
                UpstreamBadResponse("the platform's answer ended before its end")
            )
            return
        lost = ConnectionLost(
            "the platform closed the connection without an answer", reused=self._answered
        )
        lost.__cause__ = exc
        self._waiter.set_exception(lost)

    # httptools' side
    def on_message_begin(self) -> None:
        if self._waiter is None or self._waiter.done():
            # A second answer to one request: it belongs to no caller.
            self._strayed()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:
            # A trailer field: never merged into the head (RFC 9110 section 6.5.1).
            return
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _head_too_large()
        self._headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        # (Called by the parser, which is there until the connection is lost.)
        assert self._parser is not None
        status = self._parser.get_status_code()
        if status == 101:
            # Relayed, it would leave the caller waiting on a protocol the gateway does not
            # speak.
            raise UpstreamBadResponse("the platform answered HTTP 101, which cannot be relayed")
        if not 100 <= status <= 599:
            # (llhttp takes any three digits: 099 is 99, which would pass for an interim.)
            raise UpstreamBadResponse(bad_status(status))
        if status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the final one follows.
            self._interim = True
            self._headers = []
            return
        self._status = status
        self._headers_done = True
        length = transfer = None
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == "content-length":
                length = value
            elif lowered == "transfer-encoding":
                transfer = value if transfer is None else f"{transfer}, {value}"
        # (llhttp has checked that a Content-Length is digits.)
        if length is not None and int(length) > self._max_body_bytes:
            raise UpstreamBadResponse(too_large(self._max_body_bytes))
        chunked = transfer is not None and is_chunked(transfer)
        self._until_close = length is None and not chunked and status not in (204, 304)
        if self._until_close and self._tls:
            # A TCP FIN without TLS's close_notify looks the same to asyncio: anyone on the
            # path could cut such an answer short unnoticed.
            raise UpstreamBadResponse(
                "the platform's answer over TLS has no length (Content-Length or chunked), "
                "so a cut connection could not be told from its end"
            )

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body_bytes:
            raise UpstreamBadResponse(too_large(self._max_body_bytes))
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        assert self._parser is not None
        self._complete(reusable=self._parser.should_keep_alive())

    # the exchange
    def _complete(self, reusable: bool) -> None:
        if self._waiter is None or self._waiter.done():
            return
        self.reusable = reusable
        self._answered = True
        headers = CIMultiDict(self._headers)
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._waiter.set_result(Answer(self._status, headers, body))

    def _fail(self, error: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        self.close()

    def _refuse(self, error: Exception) -> None:
        """The parser refused what came: the answer's own bytes, or bytes behind it."""
        if self._waiter is not None and self._waiter.done():
            # The answer had ended (a 204 or 304 with a body, a body past its length).
            self._strayed()
        self._fail(error)

    def _strayed(self) -> None:
        # Whatever follows on this connection could be read as the next call's answer.
        self.stray = True
        self._strays.last_s = self._loop.time()
        self.close()

    async def exchange(self, request: bytes, max_body_bytes: int, deadline: float) -> Answer:
        """Sends the request and waits for the whole answer (its body at most max_body_bytes)
        until the loop's clock reads `deadline`, then raises TimeoutError."""
        assert self.transport is not None
        loop = self._loop
        # It carried answers before: one of them may have been a stray that came just as
        # this request went, and this answer the one before it.
        reused = self._answered
        self._waiter = loop.create_future()
        # A timer, not asyncio.timeout(): a fifth of the cost, on every call.
        timer = loop.call_at(deadline, self._fail, TimeoutError())
        self._reset()
        self.reusable = False
        self._max_body_bytes = max_body_bytes
        # Room for chunked framing around the largest body allowed (4-byte chunks or more).
        self._max_seen = 4 * max_body_bytes + 2 * MAX_HEAD_BYTES
        self.transport.write(request)
        try:
            answer = await self._waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.stray and reused:
            # More came behind this answer before it was taken: on a fresh connection the
            # first answer is the request's own, on a reused one it may not be.
            raise UpstreamBadResponse(
                "the platform sent more than its answer on a reused connection, so which "
                "answer is this request's cannot be told"
            )
        return answer

    def close(self) -> None:
        self.reusable = False
        self.lost = True
        if self.transport is not None:
            self.transport.close()


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
        self._idle: list[_Connection] = []
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
        connection: _Connection | None = None
        try:
            connection = self._reuse()
            strayed_s = self._strays.last_s
            while (
                connection is not None
                and strayed_s != _NEVER
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

    def _reuse(self) -> _Connection | None:
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

    async def _connect(self, connect_s: float) -> _Connection:
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
                        lambda: _Connection(loop, self._tls is not None, self._strays),
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

    def _release(self, connection: _Connection) -> None:
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


def _idle_since(connection: _Connection) -> float:
    return connection.idle_since


def request_head(
    method: str, url: URL, host_header: str, headers: CIMultiDict[str], body: bytes | None
) -> bytes:
    """The request line and headers, in one buffer."""
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1\r\nHost: {host_header}\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"a line break in the header {name!r}")
        lines.append(f"{name}: {value}\r\n")
    if "User-Agent" not in headers:
        lines.append(f"User-Agent: {USER_AGENT}\r\n")
    lines.append(f"Accept-Encoding: {ACCEPT_ENCODING}\r\n")
    if body is not None or method == "POST":
        lines.append(f"Content-Length: {len(body or b'')}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


def decoded(answer: Answer, max_body_bytes: int) -> Answer:
    """The answer's body without its Content-Encoding, never more than max_body_bytes."""
    coding = answer.headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity") or not answer.body:
        return answer
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise UpstreamBadResponse(
            f"the platform answered in an encoding the gateway cannot read ({coding})"
        )
    try:
        body = _inflated(answer.body, max_body_bytes, GZIP_OR_ZLIB, coding)
    except zlib.error:
        if coding != "deflate":
            raise UpstreamBadResponse(
                f"the platform's {coding} answer could not be decoded"
            ) from None
        # Not the zlib format RFC 9110 names: raw deflate, as some servers send.
        try:
            body = _inflated(answer.body, max_body_bytes, RAW_DEFLATE, coding)
        except zlib.error:
            raise UpstreamBadResponse(
                f"the platform's {coding} answer could not be decoded"
            ) from None
    return Answer(answer.status, answer.headers, body)


GZIP_OR_ZLIB = 47  # zlib's wbits: a gzip or zlib header, whichever it is
RAW_DEFLATE = -15
_GZIP_MAGIC = b"\x1f\x8b"


def _inflated(data: bytes, max_body_bytes: int, wbits: int, coding: str) -> bytes:
    """Every member of a gzip body (RFC 1952 section 2.2), or the one zlib or deflate
    stream; refused when one ends early or other bytes follow. zlib.error for a stream that
    is not of this kind from its first byte."""
    parts: list[bytes] = []
    size = 0
    first = True
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(data, max_body_bytes - size + 1)
        except zlib.error:
            if first:
                raise
            raise UpstreamBadResponse(
                f"the platform's {coding} answer could not be decoded"
            ) from None
        first = False
        size += len(part)
        if size > max_body_bytes or inflater.unconsumed_tail:
            raise UpstreamBadResponse(too_large(max_body_bytes))
        parts.append(part)
        if not inflater.eof:
            raise UpstreamBadResponse(f"the platform's {coding} answer ends before its end")
        data = inflater.unused_data
        if not data:
            return b"".join(parts)
        if wbits == RAW_DEFLATE or not data.startswith(_GZIP_MAGIC):
            raise UpstreamBadResponse(f"the platform's {coding} answer has bytes after its end")


def is_chunked(transfer_encoding: str) -> bool:
    """Whether an answer's Transfer-Encoding says chunked; UpstreamBadResponse for any other
    coding (gzip, or chunked twice), which would reach the caller still applied."""
    if transfer_encoding == "chunked":
        return True  # as nearly every server writes it, without the parse
    codings = [
        coding
        for coding in (token.strip().lower() for token in transfer_encoding.split(","))
        # identity: no coding at all (RFC 2616 named it; RFC 9112 no longer does).
        if coding and coding != "identity"
    ]
    if not codings:
        return False
    if codings == ["chunked"]:
        return True
    raise UpstreamBadResponse(
        "the platform's answer has a transfer coding the gateway cannot decode "
        f"(Transfer-Encoding: {transfer_encoding[:64]})"
    )


def bad_status(status: int) -> str:
    return f"the platform answered HTTP {status}, which is not an HTTP status (100 to 599)"


def _head_too_large() -> UpstreamBadResponse:
    return UpstreamBadResponse(
        f"the platform's answer has more than {MAX_HEAD_BYTES} bytes of headers"
    )


def _not_http(exc: Exception) -> UpstreamBadResponse:
    return UpstreamBadResponse(f"the platform's answer is not valid HTTP ({exc})")


def too_large(limit: int) -> str:
    return f"the platform's response is larger than limits.max_response_bytes ({limit})"


def certificate_problem(error: ssl.SSLCertVerificationError | BaseException) -> str:
    reason = getattr(error, "verify_message", None) or str(error)
    lowered = reason.lower()
    if "expired" in lowered:
        kind = "it has expired"
    elif "hostname mismatch" in lowered or "not valid for" in lowered:
        kind = "it is not for this host name (tls.server_name sets the name to check)"
    elif "issuer" in lowered or "self-signed" in lowered or "self signed" in lowered:
        kind = "it is signed by an unknown CA (tls.ca_file adds a CA to trust)"
    else:
        kind = "it could not be verified"
    return f"the platform's TLS certificate was refused: {kind} ({reason})"


def ssl_reason(exc: BaseException) -> str:
    cause = exc.os_error if hasattr(exc, "os_error") else exc
    reason = getattr(cause, "reason", None) or str(cause)
    if "CERTIFICATE_REQUIRED" in str(reason).upper() or "CERTIFICATE_REQUIRED" in str(exc).upper():
        return "the platform requires a client certificate: set tls.client_cert and tls.client_key"
    return str(reason)


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
