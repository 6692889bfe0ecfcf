"""The gateway's connections to the platform: both transports, made from one pool config,
renewed on a reload and closed together."""

from __future__ import annotations

from gateway.config.model import App
from gateway.config.schema import PoolConfig
from gateway.upstream.aiohttp_transport import AiohttpTransport
from gateway.upstream.lean.transport import LeanTransport
from gateway.upstream.tls import own_context


class Sessions:
    """The lean transport (direct calls with a body in memory: nearly all of them) and
    aiohttp's (calls through a forward proxy, and multipart uploads).

    Two pools, because each client keeps its own connections and neither can carry the
    other's calls: the lean client speaks no proxy protocol and streams no upload, and
    aiohttp's client costs several times as much per call. Both take their cap from
    pool.max_connections and their idle time from pool.keepalive_s: the lean client per TLS
    setting, aiohttp's per session (TLS setting, proxy from the environment or not). So an app
    that uploads as well as calling directly may hold up to twice pool.max_connections to its
    upstream at once."""

    def __init__(self, pool: PoolConfig, connect_s: float, total_s: float) -> None:
        self.lean = LeanTransport(pool, connect_s)
        self.aiohttp = AiohttpTransport(pool, connect_s, total_s)

    @staticmethod
    def check_tls(app: App) -> None:
        """Raises TlsSetupError if the app's TLS files cannot be used."""
        own_context(app)

    def renew(self) -> None:
        """A reload: TLS files are read again (a renewed certificate at the same path), and a
        changed TLS or proxy setting takes effect, as apps next call."""
        self.aiohttp.renew()
        self.lean.renew()

    async def close(self) -> None:
        self.lean.close()
        await self.aiohttp.close()
