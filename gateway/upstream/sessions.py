"""The connections to the platform as companies run them: a private CA, a client
certificate, a forward proxy, a bounded pool. Per distinct setting: the lean client's pools
for direct calls, and an aiohttp session for calls through a proxy and for uploads."""

from __future__ import annotations

import asyncio
import functools
import math
import ssl
import weakref
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.connector import Connection
from yarl import URL

from gateway.config.model import App
from gateway.config.schema import PROXY_FROM_ENV, PoolConfig, TlsConfig
from gateway.upstream.lean import REST_S, WARY_S, Origins, Slots


class TlsSetupError(Exception):
    """A TLS file could not be used; the message names the option."""


def ssl_context(tls: TlsConfig, where: str) -> ssl.SSLContext:
    """The context that checks the platform's certificate (and offers ours)."""
    try:
        if tls.ca_mode == "only":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        else:
            context = ssl.create_default_context()
        if tls.ca_file is not None:
            context.load_verify_locations(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(f"{where}.ca_file: cannot use {tls.ca_file} ({_reason(exc)})") from None
    if tls.client_cert is not None and tls.client_key is not None:
        try:
            context.load_cert_chain(tls.client_cert, tls.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSetupError(
                f"{where}.client_cert: cannot use {tls.client_cert} with {tls.client_key} "
                f"({_reason(exc)})"
            ) from None
    return context


def _uses_files(tls: TlsConfig) -> bool:
    return tls.ca_file is not None or tls.client_cert is not None


def _reason(exc: OSError | ssl.SSLError) -> str:
    return exc.strerror or getattr(exc, "reason", None) or type(exc).__name__


def _own_context(app: App) -> ssl.SSLContext | None:
    """The context the app's TLS files make, if it names any (TlsSetupError if unusable)."""
    return ssl_context(app.tls, f"apps.{app.name}.tls") if _uses_files(app.tls) else None


@functools.cache
def default_context() -> ssl.SSLContext:
    # Loading the system's CA store costs tens of milliseconds: once per process.
    return ssl.create_default_context()


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
    connection rests. Public aiohttp API only: `Connection.add_callback` (run on release),
    and the protocol's `should_close` and `len()` (answers parsed and not yet read), which
    tests/upstream/test_lean_adversary.py checks still behave so."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rested: weakref.WeakKeyDictionary[ResponseHandler, float] = (
            weakref.WeakKeyDictionary()
        )
        self._wary_until = -math.inf

    async def connect(self, *args: Any, **kwargs: Any) -> Connection:
        loop = asyncio.get_running_loop()
        # Each pass closes a pooled connection or returns: a new one has heard nothing.
        while True:
            connection = await super().connect(*args, **kwargs)
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


@dataclass(frozen=True)
class Route:
    """How one app reaches its upstream."""

    proxy: URL | None
    server_name: str | None
    # The lean client's pools, when the app calls its upstream directly (no proxy).
    direct: Origins | None


class Sessions:
    """Sessions by (TLS setting, whether the proxy comes from the environment), made when an
    app first needs one, so a reload that changes an app's TLS or proxy takes effect."""

    def __init__(self, pool: PoolConfig, connect_s: float, total_s: float) -> None:
        self._pool = pool
        self._timeout = aiohttp.ClientTimeout(
            total=total_s, connect=connect_s, sock_connect=connect_s
        )
        self._sessions: dict[tuple[TlsConfig, bool], aiohttp.ClientSession] = {}
        self._routes: dict[tuple[TlsConfig, str | None], Route] = {}
        self._origins: dict[TlsConfig, Origins] = {}
        # Kept across reloads (pool is a restart-only setting): calls in flight hold slots.
        self._slots: dict[TlsConfig, Slots] = {}
        # Sessions a reload replaced: requests in flight may still use them until the end.
        self._retired: list[aiohttp.ClientSession] = []

    @staticmethod
    def check_tls(app: App) -> None:
        """Raises TlsSetupError if the app's TLS files cannot be used."""
        _own_context(app)

    def route(self, app: App) -> Route:
        route = self._routes.get((app.tls, app.proxy))
        if route is None:
            route = self._routes[(app.tls, app.proxy)] = self._route(app)
        return route

    def session(self, app: App) -> aiohttp.ClientSession:
        """aiohttp's client, for calls through a proxy and uploads: made when first needed
        (most gateways never make one)."""
        from_env = app.proxy == PROXY_FROM_ENV
        key = (app.tls, from_env)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = self._session(app, from_env)
        return session

    def _route(self, app: App) -> Route:
        proxy = URL(app.proxy) if app.proxy not in (None, PROXY_FROM_ENV) else None
        direct = None
        if app.proxy is None:
            direct = self._origins.get(app.tls)
            if direct is None:
                direct = self._origins[app.tls] = Origins(
                    _own_context(app) or default_context(),
                    app.tls.server_name,
                    self._slots.setdefault(app.tls, Slots(self._pool.max_connections)),
                    self._pool.keepalive_s,
                )
        return Route(proxy, app.tls.server_name, direct)

    def _session(self, app: App, from_env: bool) -> aiohttp.ClientSession:
        connector = WaryConnector(
            limit=self._pool.max_connections,
            keepalive_timeout=self._pool.keepalive_s,
            ttl_dns_cache=300,
            # Without TLS files, aiohttp's own verifying context (True), made once per process.
            ssl=_own_context(app) or True,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            # A caller's cookies or a platform's Set-Cookie must not leak between callers.
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
            # proxy: env follows HTTPS_PROXY, HTTP_PROXY and NO_PROXY, as curl does.
            trust_env=from_env,
        )
        # aiohttp sends a GET again, once, when its connection breaks; the gateway's own
        # retries (retries.attempts, signed afresh, with backoff) are the only ones. No
        # public option says so; tests/egress/test_proxy.py notices if this stops working.
        session._retry_connection = False
        return session

    def renew(self) -> None:
        """A reload: TLS files are read again (a renewed certificate at the same path), by
        new sessions made as apps next need them."""
        self._retired += self._sessions.values()
        self._sessions.clear()
        self._routes.clear()
        # Idle connections go now; those in use close when their exchange ends.
        for origins in self._origins.values():
            origins.close()
        self._origins.clear()

    async def close(self) -> None:
        for origins in self._origins.values():
            origins.close()
        self._origins.clear()
        for session in [*self._sessions.values(), *self._retired]:
            await session.close()
        self._sessions.clear()
        self._routes.clear()
        self._retired.clear()
