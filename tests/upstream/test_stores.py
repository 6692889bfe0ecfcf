"""The Redis store against a real redis-server."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.config.model import RedisTarget
from gateway.upstream.stores import RedisStore
from gateway.upstream.tokens import StoreError
from tests.support.redis_server import RedisServer


async def test_entries_live_under_the_prefix_with_a_ttl(redis_server: RedisServer) -> None:
    store = RedisStore(RedisTarget.of_url(redis_server.url, "neu:test:", 1))
    await store.put("x:demo:abc", b"answer", ttl_s=30)
    assert await store.get("x:demo:abc") == b"answer"
    assert await store.lock("lock:x", ttl_s=5)
    assert not await store.lock("lock:x", ttl_s=5)
    client = aioredis.from_url(redis_server.url)
    keys = sorted(await client.keys("*"))
    assert keys == [b"neu:test:lock:x", b"neu:test:x:demo:abc"]
    for key in keys:
        assert 0 < await client.pttl(key) <= 30_000
    await store.unlock("lock:x")
    assert await store.lock("lock:x", ttl_s=5)
    other = RedisStore(RedisTarget.of_url(redis_server.url, "neu:test:", 1))
    await other.unlock("lock:x")
    assert not await other.lock("lock:x", ttl_s=5), "only the holder releases its lock"
    await other.close()
    await store.delete("x:demo:abc")
    assert await store.get("x:demo:abc") is None
    await client.aclose()
    await store.close()


async def test_a_password_in_the_url() -> None:
    server = RedisServer(password="s3cret-pw")
    await server.start()
    try:
        store = RedisStore(RedisTarget.of_url(server.url, "neu:", 1))
        await store.put("k", b"v", 5)
        assert await store.get("k") == b"v"
        await store.close()
        wrong = RedisStore(
            RedisTarget.of_url(server.url.replace("s3cret-pw", "wrong-pw"), "neu:", 1)
        )
        with pytest.raises(StoreError) as caught:
            await wrong.get("k")
        assert "s3cret-pw" not in str(caught.value)
        assert "wrong-pw" not in str(caught.value)
        await wrong.close()
    finally:
        await server.stop()


async def test_a_stopped_server_is_a_store_error(redis_server: RedisServer) -> None:
    store = RedisStore(RedisTarget.of_url(redis_server.url, "neu:", 0.5))
    await redis_server.stop()
    with pytest.raises(StoreError):
        await store.get("k")
    await store.close()


async def test_redis_over_tls_with_a_password(tmp_path: Path) -> None:
    server = RedisServer(password="tls-pw-123", tls_dir=tmp_path)
    await server.start()
    try:
        assert server.url.startswith("rediss://")
        store = RedisStore(RedisTarget.of_url(server.url, "neu:", 2))
        await store.put("k", b"over tls", 5)
        assert await store.get("k") == b"over tls"
        await store.close()
        without_tls = server.url.replace("rediss://", "redis://").split("?")[0]
        plain = RedisStore(RedisTarget.of_url(without_tls, "neu:", 1))
        with pytest.raises(StoreError):
            await plain.get("k")
        await plain.close()
    finally:
        await server.stop()
