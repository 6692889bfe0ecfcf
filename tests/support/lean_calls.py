"""Calls through the lean client's pool, as the transport makes them."""

from __future__ import annotations

from multidict import CIMultiDict
from yarl import URL

from gateway.upstream.lean.pool import Origins, Pool, Slots
from gateway.upstream.lean.wire import request_head
from gateway.upstream.tls import default_context
from gateway.upstream.transport import Answer
from tests.support.paths import ECHO as ECHO_PATH


def pool_for(url: str, limit: int = 0, keepalive_s: float = 30) -> Pool:
    return Origins(default_context(), None, Slots(limit), keepalive_s).pool(URL(url))


async def call(
    pool: Pool, max_body_bytes: int = 1 << 20, body: bytes | None = None, timeout_s: float = 5
) -> Answer:
    url = URL(f"http://{pool.host_header}{ECHO_PATH}?a=1", encoded=True)
    method = "GET" if body is None else "POST"
    head = request_head(method, url, pool.host_header, CIMultiDict(), body)
    return await pool.request(head, body, max_body_bytes, timeout_s, 2)
