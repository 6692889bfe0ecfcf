"""The lean client as a Transport: direct calls with a body in memory, the pools picked by
the app's TLS setting, and what ended a call without an answer told as a gateway error."""

from __future__ import annotations

from aiohttp import MultipartWriter

from gateway.config.model import App
from gateway.config.schema import PoolConfig, TlsConfig
from gateway.core.errors import UpstreamTimeout, UpstreamUnreachable
from gateway.upstream.failures import log_failure, lost, own_tls_failed
from gateway.upstream.lean.connection import ConnectionLost
from gateway.upstream.lean.pool import Origins, Slots
from gateway.upstream.lean.wire import decoded, request_head
from gateway.upstream.tls import TlsSetupError, default_context, own_context
from gateway.upstream.transport import Answer, Request


class LeanTransport:
    """Pools by TLS setting (CA, client certificate, server name), each route capped at
    pool.max_connections, made when an app first calls, so a reload that changes an app's
    TLS takes effect."""

    def __init__(self, pool: PoolConfig, connect_s: float) -> None:
        self._pool = pool
        self._connect_s = connect_s
        self._origins: dict[TlsConfig, Origins] = {}
        # Kept across reloads (pool is a restart-only setting): calls in flight hold slots.
        self._slots: dict[TlsConfig, Slots] = {}

    async def send(self, request: Request) -> Answer:
        body = request.body
        if isinstance(body, MultipartWriter):
            raise TypeError("the lean client sends bodies in memory; uploads go through aiohttp")
        try:
            origins = self._origins_for(request.app)
        except TlsSetupError as exc:
            raise own_tls_failed(exc) from None
        url = request.url
        pool = origins.pool(url)
        head = request_head(request.method, url, pool.host_header, request.headers, body)
        try:
            answer = await pool.request(
                head,
                body,
                request.max_response_bytes,
                max(0.001, request.timeout_s),
                self._connect_s,
            )
        except TimeoutError as exc:
            log_failure(request.method, url, exc)
            raise UpstreamTimeout() from exc
        except UpstreamUnreachable as exc:
            log_failure(request.method, url, exc)
            raise
        except (ConnectionLost, OSError) as exc:
            log_failure(request.method, url, exc)
            reused = isinstance(exc, ConnectionLost) and exc.reused
            raise lost(request, exc, reused) from exc
        return decoded(answer, request.max_response_bytes)

    def _origins_for(self, app: App) -> Origins:
        origins = self._origins.get(app.tls)
        if origins is None:
            origins = self._origins[app.tls] = Origins(
                own_context(app) or default_context(),
                app.tls.server_name,
                self._slots.setdefault(app.tls, Slots(self._pool.max_connections)),
                self._pool.keepalive_s,
            )
        return origins

    def renew(self) -> None:
        """A reload: TLS files are read again as apps next call. Idle connections go now;
        those in use close when their exchange ends."""
        self.close()

    def close(self) -> None:
        for origins in self._origins.values():
            origins.close()
        self._origins.clear()
