"""The shared rate limits' count (gateway/shared/rate_storage.py) against real redis-servers:
one count for every counter on one Redis, over a password, TLS and Sentinel, and each
failure a SharedCountError that names its kind and nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from limits.aio.storage import RedisClusterStorage

from gateway.config.model import RedisTarget
from gateway.core.ratelimit import Rate, Window
from gateway.core.secrets import Secret
from gateway.shared.rate_storage import SharedCounter, SharedCountError, open_storage
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

TWENTY_A_SECOND = Rate(20, 20, shared=True).window()


async def admitted(counters: list[SharedCounter], name: str, window: Window, count: int) -> int:
    """How many of `count` requests at once, spread over the counters, were let through."""
    waits = await asyncio.gather(
        *(counters[i % len(counters)].take(name, window) for i in range(count))
    )
    return sum(wait is None for wait in waits)


async def test_two_counters_on_one_redis_count_as_one_behind_a_password() -> None:
    server = RedisServer(password="s3cret-pw")
    await server.start()
    # A generous timeout: the 60 calls at once open 60 connections, on a machine that may be
    # busy with other tests.
    counters = [SharedCounter(RedisTarget.of_url(server.url, "neu:test:", 5)) for _ in "ab"]
    client = aioredis.from_url(server.url)
    try:
        assert await admitted(counters, "orders", TWENTY_A_SECOND, 60) == 20
        assert await admitted(counters, "notifier", TWENTY_A_SECOND, 5) == 5, "its own count"
        keys = sorted(await client.keys("*"))
        assert keys == [
            b"neu:test:ratelimit:{caller/notifier/20/1/second}",
            b"neu:test:ratelimit:{caller/orders/20/1/second}",
        ]
        for key in keys:
            assert 0 < await client.pttl(key) <= 2000, "kept two windows, no longer"
    finally:
        await client.aclose()
        for counter in counters:
            await counter.close()
        await server.stop()


async def test_a_wrong_password_is_a_count_error_that_does_not_print_it() -> None:
    server = RedisServer(password="s3cret-pw")
    await server.start()
    wrong = SharedCounter(
        RedisTarget.of_url(server.url.replace("s3cret-pw", "wrong-pw"), "neu:", 1)
    )
    try:
        with pytest.raises(SharedCountError) as caught:
            await wrong.take("orders", TWENTY_A_SECOND)
        assert str(caught.value) == "AuthenticationError"
    finally:
        await wrong.close()
        await server.stop()


async def test_a_refusal_tells_the_wait_for_the_next_place(redis_server: RedisServer) -> None:
    counter = SharedCounter(RedisTarget.of_url(redis_server.url))
    # One request every two seconds: a window of 2 s that takes 1.
    window = Rate(0.5, 1, shared=True).window()
    try:
        assert await counter.take("orders", window) is None
        wait = await counter.take("orders", window)
        assert wait is not None
        assert 0 < wait <= 2
        # A fraction of a request a window is lost: 2.5 a second with a burst of 1 is 2.
        assert await admitted([counter], "fractional", Rate(2.5, 1).window(), 5) == 2
    finally:
        await counter.close()


async def test_over_tls_with_a_password(tmp_path: Path) -> None:
    server = RedisServer(password="tls-pw-123", tls_dir=tmp_path)
    await server.start()
    counter = SharedCounter(RedisTarget.of_url(server.url, "neu:", 5))
    plain = SharedCounter(
        RedisTarget.of_url(server.url.replace("rediss://", "redis://").split("?")[0], "neu:", 1)
    )
    try:
        assert await admitted([counter], "orders", TWENTY_A_SECOND, 25) == 20
        with pytest.raises(SharedCountError):
            await plain.take("orders", TWENTY_A_SECOND)
    finally:
        await counter.close()
        await plain.close()
        await server.stop()


async def test_a_stopped_server_is_a_count_error(redis_server: RedisServer) -> None:
    counter = SharedCounter(RedisTarget.of_url(redis_server.url, "neu:", 0.5))
    await redis_server.stop()
    try:
        with pytest.raises(SharedCountError, match=r"^ConnectionError$"):
            await counter.take("orders", TWENTY_A_SECOND)
    finally:
        await counter.close()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A listener that takes connections and reads what they send, and never answers."""
    received: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while data := await reader.read(65536):
            received.append(data)
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_a_server_that_never_answers_is_a_timeout_within_the_cache_timeout() -> None:
    async with silent_server() as (port, received):
        counter = SharedCounter(RedisTarget.of_url(f"redis://127.0.0.1:{port}/0", "neu:", 0.2))
        try:
            # Bounded by the test's own deadline: the count's must come well before it.
            async with asyncio.timeout(5):
                with pytest.raises(SharedCountError, match=r"^TimeoutError$"):
                    await counter.take("orders", TWENTY_A_SECOND)
            assert received, "it was asked"
        finally:
            await counter.close()


@contextlib.asynccontextmanager
async def sentinel_for(master: RedisServer, tmp_path: Path) -> AsyncIterator[int]:
    """One sentinel (redis-server in sentinel mode, without a password of its own) watching
    `master` as `neu`; yields its port once it names the master."""
    binary = shutil.which("redis-server")
    assert binary is not None
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel resolve-hostnames no\n"
        f"sentinel monitor neu 127.0.0.1 {master.port} 1\n"
        f"sentinel auth-pass neu {master.password}\n"
    )
    process = await asyncio.create_subprocess_exec(
        binary, str(conf), "--sentinel",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        async with asyncio.timeout(10):
            while True:
                with contextlib.suppress(aioredis.ConnectionError):
                    if await client.execute_command("SENTINEL", "get-master-addr-by-name", "neu"):
                        break
                await asyncio.sleep(0.01)  # wait-ok: polls the sentinel until it is up
        yield port
    finally:
        await client.aclose()
        process.terminate()
        await process.wait()


async def test_through_sentinel_with_a_password_on_the_master_only(tmp_path: Path) -> None:
    master = RedisServer(password="master-pw")
    await master.start()
    try:
        async with sentinel_for(master, tmp_path) as sentinel_port:
            target = RedisTarget(
                form="sentinel",
                nodes=(("127.0.0.1", sentinel_port),),
                master="neu",
                password=Secret("master-pw"),
                prefix="neu:",
                timeout_s=5,
            )
            counters = [SharedCounter(target) for _ in "ab"]
            try:
                assert await admitted(counters, "orders", TWENTY_A_SECOND, 60) == 20
            finally:
                for counter in counters:
                    await counter.close()
            client = aioredis.from_url(master.url)
            assert await client.keys("*") == [b"neu:ratelimit:{caller/orders/20/1/second}"]
            await client.aclose()
    finally:
        await master.stop()


def test_a_cluster_gets_limits_cluster_storage_made_without_connecting() -> None:
    # A Cluster of its own needs six servers (tests/support/redis_ha.py, on its way): here,
    # only that a cluster target makes a cluster storage, over nodes nothing listens on.
    target = RedisTarget(
        form="cluster", nodes=(("127.0.0.1", free_port()), ("::1", free_port())), timeout_s=1
    )
    storage, close = open_storage(target)
    assert isinstance(storage, RedisClusterStorage)
    assert close is None, "limits gives no way to close it"
