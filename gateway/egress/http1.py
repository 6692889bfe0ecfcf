"""A lean HTTP/1.1 client for the direct route to the platform.

Signed calls to one upstream need little of a general client: no cookies, redirects, proxies
or streamed bodies, just a keep-alive pool, a strict parser (httptools, llhttp as Node.js
uses it), TLS and bounded reads. Doing only that costs a fraction of aiohttp's client per
call. Calls through a forward proxy, and multipart uploads, still go through aiohttp.

Its errors are the gateway's own (UpstreamTimeout is left to the caller's timeout).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import zlib
from dataclasses import dataclass

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
# Headers that say where an answer ends; without them, it ends with the connection.
_FRAMING = ("content-length", "transfer-encoding")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDict[str]
    body: bytes


class ConnectionLost(Exception):
    """The connection ended before the whole answer came; its cause, if any, is chained."""


class _Connection(asyncio.Protocol):
    """One connection, one exchange at a time; the parser's callbacks fill the answer."""

    def __init__(self) -> None:
        self._max_body_bytes = 0
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] = []
        self._head_bytes = 0
        self._body_bytes = 0
        self._status = 0
        self._headers_done = False
        self.reusable = False

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for: the connection cannot be trusted with another call.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # A callback refused the answer (its size, a 1xx): that refusal is the error.
            refusal = exc.__context__
            self._fail(refusal if isinstance(refusal, UpstreamBadResponse) else _not_http(exc))
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(_not_http(exc))

    def eof_received(self) -> bool:
        # An answer without a length ends when the connection does (RFC 9112 section 6.3).
        if self._waiter is not None and not self._waiter.done() and self._until_close():
            self._complete(reusable=False)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        if self._waiter is not None and not self._waiter.done():
            if exc is None and self._until_close():
                self._complete(reusable=False)
                return
            if self._headers_done:
                # The answer began and was cut short: what came cannot be relayed.
                self._waiter.set_exception(
                    UpstreamBadResponse("the platform's answer ended before its end")
                )
                return
            lost = ConnectionLost("the platform closed the connection without an answer")
            lost.__cause__ = exc
            self._waiter.set_exception(lost)

    def _until_close(self) -> bool:
        return (
            self._headers_done
            and self._parser.get_status_code() not in (204, 304)
            and not any(name.lower() in _FRAMING for name, _ in self._headers)
        )

    # httptools' side
    def on_message_begin(self) -> None:
        if self._waiter is None or self._waiter.done():
            # A second answer to one request: it belongs to no caller, and whatever follows
            # on this connection could be read as the next caller's answer.
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise UpstreamBadResponse(
                f"the platform's answer has more than {MAX_HEAD_BYTES} bytes of headers"
            )
        self._headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True
        if self._status < 200:
            # 101 Switching Protocols (or another 1xx) relayed would leave the caller
            # waiting on a protocol the gateway does not speak.
            raise UpstreamBadResponse(
                f"the platform answered HTTP {self._status}, which cannot be relayed"
            )

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body_bytes:
            raise UpstreamBadResponse(too_large(self._max_body_bytes))
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self._complete(reusable=self._parser.should_keep_alive())

    # the exchange
    def _complete(self, reusable: bool) -> None:
        if self._waiter is None or self._waiter.done():
            return
        self.reusable = reusable
        headers = CIMultiDict(self._headers)
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._waiter.set_result(Answer(self._status, headers, body))

    def _fail(self, error: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        self.close()

    async def exchange(self, request: bytes, max_body_bytes: int, deadline: float) -> Answer:
        """Sends the request and waits for the whole answer (its body at most max_body_bytes)
        until the loop's clock reads `deadline`, then raises TimeoutError."""
        assert self.transport is not None
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        # A timer, not asyncio.timeout(): a fifth of the cost, on every call.
        timer = loop.call_at(deadline, self._fail, TimeoutError())
        self._headers, self._chunks = [], []
        self._head_bytes = self._body_bytes = self._status = 0
        self._headers_done = self.reusable = False
        self._max_body_bytes = max_body_bytes
        self.transport.write(request)
        try:
            return await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    def close(self) -> None:
        self.reusable = False
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
            else:
                self._waiters.remove(waiter)
            raise

    def give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter
                return
        self._taken -= 1


class Pool:
    """Kept-alive connections to one origin, the most recently used first."""

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
        self._idle: list[_Connection] = []
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
        deadline = asyncio.get_running_loop().time() + timeout_s
        await self._slots.take(deadline)
        connection: _Connection | None = None
        try:
            connection = self._reuse() or await self._connect(min(connect_s, timeout_s))
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
        while self._idle:
            connection = self._idle.pop()
            if not connection.lost:
                return connection
        return None

    async def _connect(self, connect_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_s):
                _, protocol = await loop.create_connection(
                    _Connection,
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=(self._server_name or self._host) if self._tls else None,
                )
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
        except OSError as exc:
            raise UpstreamUnreachable(unsent=True) from exc
        return protocol

    def _release(self, connection: _Connection) -> None:
        if connection.reusable and not connection.lost and not self._closed:
            connection.idle_timer = asyncio.get_running_loop().call_later(
                self._keepalive_s, connection.close
            )
            self._idle.append(connection)
        else:
            connection.close()
        self._slots.give_back()

    def close(self) -> None:
        self._closed = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()


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
    if coding in ("gzip", "x-gzip", "deflate"):
        # 47: a gzip or zlib header, whichever it is; -15: deflate without one, as some send.
        for wbits in (47, -15) if coding == "deflate" else (47,):
            inflater = zlib.decompressobj(wbits)
            try:
                body = inflater.decompress(answer.body, max_body_bytes + 1)
            except zlib.error:
                continue
            if len(body) > max_body_bytes or inflater.unconsumed_tail:
                raise UpstreamBadResponse(too_large(max_body_bytes))
            return Answer(answer.status, answer.headers, body + inflater.flush())
        raise UpstreamBadResponse(f"the platform's {coding} answer could not be decoded")
    raise UpstreamBadResponse(
        f"the platform answered in an encoding the gateway cannot read ({coding})"
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
        self, tls: ssl.SSLContext, server_name: str | None, limit: int, keepalive_s: float
    ) -> None:
        self._tls = tls
        self._server_name = server_name
        self._slots = Slots(limit)
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
