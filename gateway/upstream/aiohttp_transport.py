"""aiohttp's client as a Transport: calls through a forward proxy, and multipart uploads.

It owns the map from aiohttp's exceptions to the gateway's (`gateway_error`): none of them
leaves this module. tests/upstream/test_exception_map.py walks every aiohttp.ClientError
subclass, so one a new aiohttp adds fails there until it is mapped on purpose. An answer the
lean client would refuse as it parses is refused here alike.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import hdrs
from multidict import CIMultiDict
from yarl import URL

from gateway.config.model import App
from gateway.config.schema import PROXY_FROM_ENV, PoolConfig, TlsConfig
from gateway.core.errors import (
    GatewayError,
    UpstreamBadResponse,
    UpstreamDnsError,
    UpstreamTimeout,
    UpstreamTlsError,
    UpstreamUnreachable,
)
from gateway.core.sizes import READ_CHUNK_BYTES, gather_capped
from gateway.upstream.aiohttp_client import WaryConnector, without_resends
from gateway.upstream.failures import (
    certificate_problem,
    log_failure,
    lost,
    own_tls_failed,
    ssl_reason,
)
from gateway.upstream.framing import bad_status, is_chunked, too_large
from gateway.upstream.headers import has_control_character
from gateway.upstream.tls import TlsSetupError, own_context
from gateway.upstream.transport import Answer, Request


class AiohttpTransport:
    """Sessions by (TLS setting, whether the proxy comes from the environment), made when an
    app first needs one (most gateways never make one), so a reload that changes an app's TLS
    or proxy takes effect. Each session's connector is capped at pool.max_connections."""

    def __init__(self, pool: PoolConfig, connect_s: float, total_s: float) -> None:
        self._pool = pool
        self._connect_s = connect_s
        self._total_s = total_s
        self._session_timeout = aiohttp.ClientTimeout(
            total=total_s, connect=connect_s, sock_connect=connect_s
        )
        # A first attempt has the whole time (one object, made once); a retry what is left.
        self._whole_time = self._timeout(total_s)
        self._sessions: dict[tuple[TlsConfig, bool], aiohttp.ClientSession] = {}
        # Sessions a reload replaced: requests in flight may still use them until the end.
        self._retired: list[aiohttp.ClientSession] = []
        self._proxies: dict[str, URL] = {}

    def _timeout(self, total_s: float) -> aiohttp.ClientTimeout:
        connect_s = min(self._connect_s, total_s)
        return aiohttp.ClientTimeout(total=total_s, connect=connect_s, sock_connect=connect_s)

    async def send(self, request: Request) -> Answer:
        try:
            session = self._session_for(request.app)
        except TlsSetupError as exc:
            raise own_tls_failed(exc) from None
        timeout_s = request.timeout_s
        timeout = (
            self._whole_time
            if timeout_s >= self._total_s - 0.01
            else self._timeout(max(0.001, timeout_s))
        )
        method, url = request.method, request.url
        try:
            async with session.request(
                method,
                url,
                headers=request.headers,
                data=request.body,
                allow_redirects=False,
                proxy=self._proxy(request.app),
                server_hostname=request.app.tls.server_name,
                timeout=timeout,
            ) as response:
                _refuse_unrelayable(response)
                body = await _read_capped(response, request.max_response_bytes)
                return Answer(response.status, CIMultiDict(response.headers), body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log_failure(method, url, exc)
            raise gateway_error(exc, request) from exc

    def _session_for(self, app: App) -> aiohttp.ClientSession:
        from_env = app.proxy == PROXY_FROM_ENV
        key = (app.tls, from_env)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = self._session(app, from_env)
        return session

    def _session(self, app: App, from_env: bool) -> aiohttp.ClientSession:
        connector = WaryConnector(
            limit=self._pool.max_connections,
            keepalive_timeout=self._pool.keepalive_s,
            ttl_dns_cache=300,
            # Without TLS files, aiohttp's own verifying context (True), made once per process.
            ssl=own_context(app) or True,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._session_timeout,
            # A caller's cookies or a platform's Set-Cookie must not leak between callers.
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
            # proxy: env follows HTTPS_PROXY, HTTP_PROXY and NO_PROXY, as curl does.
            trust_env=from_env,
        )
        without_resends(session)
        return session

    def _proxy(self, app: App) -> URL | None:
        if app.proxy is None or app.proxy == PROXY_FROM_ENV:
            return None
        proxy = self._proxies.get(app.proxy)
        if proxy is None:
            proxy = self._proxies[app.proxy] = URL(app.proxy)
        return proxy

    def renew(self) -> None:
        """A reload: TLS files are read again (a renewed certificate at the same path), by
        new sessions made as apps next need them."""
        self._retired += self._sessions.values()
        self._sessions.clear()

    async def close(self) -> None:
        for session in [*self._sessions.values(), *self._retired]:
            await session.close()
        self._sessions.clear()
        self._retired.clear()
        # Lets the connectors' SSL transports finish closing before the loop goes away.
        await asyncio.sleep(0)


def _refuse_unrelayable(response: aiohttp.ClientResponse) -> None:
    """What the lean client refuses as it parses, refused here alike."""
    if not 100 <= response.status <= 599:
        raise UpstreamBadResponse(bad_status(response.status))
    transfer = response.headers.getall(hdrs.TRANSFER_ENCODING, None)
    if transfer is not None:
        # aiohttp undoes chunked alone: any other coding would be relayed as sent.
        is_chunked(", ".join(transfer))
    if has_control_character(response.headers):
        # (aiohttp's parser lets them through, but for NUL; llhttp's does not.)
        raise UpstreamBadResponse("the platform's answer has a control character in a header value")
    if response.status < 200:
        # 101 Switching Protocols (or another 1xx) relayed would leave the caller waiting on
        # a protocol the gateway does not speak.
        raise UpstreamBadResponse(
            f"the platform answered HTTP {response.status}, which cannot be relayed"
        )


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if (response.content_length or 0) > max_bytes:
        raise UpstreamBadResponse(too_large(max_bytes))
    if response.content_length is not None and hdrs.CONTENT_ENCODING not in response.headers:
        # Its size is known and allowed: one read, not a chunk loop. (A compressed body is
        # read in chunks: its decoded size is what the cap is for.)
        return await response.read()
    return await gather_capped(
        response.content.iter_chunked(READ_CHUNK_BYTES),
        max_bytes,
        lambda: UpstreamBadResponse(too_large(max_bytes)),
    )


def gateway_error(
    exc: TimeoutError | aiohttp.ClientError | OSError, request: Request
) -> GatewayError:
    """The gateway's error for what aiohttp raised (or let through from the ssl module or the
    OS): a timeout 504, anything else 502, unsent=True where no byte of the request left."""
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout()
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return UpstreamTlsError(certificate_problem(exc.certificate_error))
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return UpstreamDnsError(
            f"the platform's host name {request.url.host!r} could not be resolved (DNS)",
            unsent=True,
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return UpstreamTlsError(f"the TLS handshake with the platform failed ({ssl_reason(exc)})")
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return UpstreamUnreachable("the proxy could not be reached (check proxy)", unsent=True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(unsent=True)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return UpstreamUnreachable(
            f"the proxy refused the connection (HTTP {exc.status}); check proxy and its "
            "credentials",
            unsent=True,
        )
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return UpstreamBadResponse()
    return lost(request, exc)
