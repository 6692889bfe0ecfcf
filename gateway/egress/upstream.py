"""The pooled client that talks to the platform, and the one place its errors are translated.

aiohttp's exceptions never leave this module: a timeout becomes UpstreamTimeout (504), a
refused, reset or dropped connection UpstreamUnreachable (502), an unreadable answer
UpstreamBadResponse (502).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway import logs
from gateway.core.errors import UpstreamBadResponse, UpstreamTimeout, UpstreamUnreachable
from gateway.core.params import is_unicode
from gateway.core.platform import platform_status
from gateway.core.sizes import READ_CHUNK_BYTES, gather_capped
from gateway.metrics import NONE, Metrics

log = logs.logger("neu_gateway.upstream")

# RFC 9110 section 7.6.1: these describe one connection, not the message, so never relay them.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# The body is relayed decoded and re-framed, so its old length and coding no longer apply.
REFRAMED = frozenset({"content-length", "content-encoding"})


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes


def end_to_end_headers(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The headers worth relaying: no hop-by-hop ones, none named in Connection."""
    named_in_connection = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    dropped = HOP_BY_HOP | REFRAMED | named_in_connection
    return CIMultiDict(
        (name, value)
        for name, value in headers.items()
        # A value whose bytes are not UTF-8 could not be written to the caller again.
        if name.lower() not in dropped and is_unicode(name) and is_unicode(value)
    )


def create_session(connect_s: float, total_s: float) -> aiohttp.ClientSession:
    """One pooled, keep-alive session for every upstream call the gateway makes."""
    connector = aiohttp.TCPConnector(limit=256, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=total_s, connect=connect_s, sock_connect=connect_s),
        # A caller's cookies or a platform's Set-Cookie must not leak between callers.
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
    )


class Upstream:
    """Sends one request to the platform and reads the whole answer, within the timeouts."""

    def __init__(
        self, session: aiohttp.ClientSession, max_response_bytes: int, metrics: Metrics
    ) -> None:
        self._session = session
        self._max_response_bytes = max_response_bytes
        self._metrics = metrics

    async def request(
        self,
        method: str,
        url: URL,
        *,
        headers: CIMultiDict[str],
        data: Any = None,
        app: str,
        route: str,
    ) -> UpstreamResponse:
        """One call to the platform for `app`, counted under `route` (see metrics)."""
        started = time.monotonic()
        # No answer: what went wrong stands in for the HTTP status.
        http_status, platform = "error", NONE
        try:
            answer = await self._request(method, url, headers=headers, data=data)
        except UpstreamTimeout:
            http_status = "timeout"
            raise
        except UpstreamUnreachable:
            http_status = "unreachable"
            raise
        else:
            http_status = str(answer.status)
            status, _ = platform_status(answer.body)
            platform = NONE if status is None else str(status)
            return answer
        finally:
            self._metrics.observe_upstream(
                app, route, http_status, platform, time.monotonic() - started
            )

    async def _request(
        self, method: str, url: URL, *, headers: CIMultiDict[str], data: Any = None
    ) -> UpstreamResponse:
        """One call to the platform, read in full.

        aiohttp itself retries an idempotent request (GET) once when a pooled keep-alive
        connection turns out closed (RFC 9112 section 9.3.1); a POST, which may have reached
        the platform (a trade), is never repeated.
        """
        try:
            async with self._session.request(
                method, url, headers=headers, data=data, allow_redirects=False
            ) as response:
                if response.status < 200:
                    # 101 Switching Protocols (or another 1xx) relayed would leave the caller
                    # waiting on a protocol the gateway does not speak.
                    raise UpstreamBadResponse(
                        f"the platform answered HTTP {response.status}, which cannot be relayed"
                    )
                body = await self._read_capped(response)
                # The full URL holds the sign (and user/info's accessToken): the log's redaction
                # filter removes them; this line is only for debugging what was sent.
                log.debug("upstream %s %s answered %d", method, url, response.status)
                return UpstreamResponse(response.status, end_to_end_headers(response.headers), body)
        except TimeoutError as exc:
            _log_failure(method, url, exc)
            raise UpstreamTimeout() from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            _log_failure(method, url, exc)
            raise UpstreamBadResponse() from exc
        except (aiohttp.ClientError, OSError) as exc:
            _log_failure(method, url, exc)
            raise UpstreamUnreachable() from exc

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        if (response.content_length or 0) > self._max_response_bytes:
            raise UpstreamBadResponse(_too_large(self._max_response_bytes))
        return await gather_capped(
            response.content.iter_chunked(READ_CHUNK_BYTES),
            self._max_response_bytes,
            lambda: UpstreamBadResponse(_too_large(self._max_response_bytes)),
        )


def _log_failure(method: str, url: URL, exc: BaseException) -> None:
    # The query is left out: it holds the sign and, for user/info, an accessToken.
    log.warning("upstream %s %s failed: %s", method, url.with_query(None), type(exc).__name__)


def _too_large(limit: int) -> str:
    return f"the platform's response is larger than limits.max_response_bytes ({limit})"


async def close_session(session: aiohttp.ClientSession) -> None:
    await session.close()
    # Lets the connector's SSL transports finish closing before the loop goes away.
    await asyncio.sleep(0)
