"""The Sentinel and Cluster sets the shared-state tests stand on: a client that knows only the
set's public addresses follows a crashed master's failover by itself, and a set that fails to
start says why and leaves nothing running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

import tests.support.redis_server
from tests.support.ports import free_port
from tests.support.redis_ha import ClusterSet, SentinelSet
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

T = TypeVar("T")
OPEN = pytest.param({}, id="open")
KEYS = [f"order:{number}" for number in range(24)]


def address(node: str) -> tuple[str, int]:
    host, port = node.rsplit(":", 1)
    return host, int(port)


async def eventually(call: Callable[[], Awaitable[T]], timeout_s: float = 10) -> T:
    """`call()`'s result once the client has found its way to the new master."""
    last: RedisError | None = None
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    return await call()
                except RedisError as exc:
                    last = exc
                await asyncio.sleep(0.05)  # wait-ok: polled; the client's recovery has no event
    except TimeoutError:
        raise AssertionError(f"the client never recovered: {last!r}") from None


@pytest.mark.parametrize(
    "redis_sentinel_set",
    [OPEN, pytest.param({"password": "data-pw-1", "sentinel_password": "watch-pw-2"}, id="pw")],
    indirect=True,
)
async def test_a_sentinel_client_follows_the_master_through_a_crash(
    redis_sentinel_set: SentinelSet,
) -> None:
    ha = redis_sentinel_set
    sentinel = Sentinel(
        [address(node) for node in ha.sentinel_nodes],
        sentinel_kwargs={"password": ha.sentinel_password, "socket_timeout": 1},
        password=ha.password,
        socket_timeout=1,
        decode_responses=True,
    )
    master = sentinel.master_for(ha.master_name)
    try:
        await master.set("order:1", "paid")
        assert await master.wait(1, 2000) == 1, "the replica has the write before the crash"

        old = await ha.kill_master()
        new = await ha.failed_over(old, deadline_s=15)

        assert new != old
        assert await eventually(lambda: master.get("order:1")) == "paid"
        # A write lands: the client is on the new master (the old replica would refuse it).
        await master.set("order:2", "paid")
        assert await sentinel.discover_master(ha.master_name) == ("127.0.0.1", new)
    finally:
        await master.aclose()
        await sentinel.aclose()


@pytest.mark.parametrize(
    "redis_cluster_set", [OPEN, pytest.param({"password": "cluster-pw-3"}, id="pw")], indirect=True
)
async def test_a_cluster_client_reads_every_key_back_after_a_primary_fails_over(
    redis_cluster_set: ClusterSet,
) -> None:
    cluster = redis_cluster_set
    client = RedisCluster(
        startup_nodes=[ClusterNode(*address(node)) for node in cluster.startup_nodes],
        password=cluster.password,
        socket_timeout=1,
        decode_responses=True,
    )
    try:
        for key in KEYS:
            await client.set(key, key.upper())
        primaries = {await cluster.primary_port_for(key) for key in KEYS}
        assert len(primaries) == 3, "the keys lie on every primary"
        for primary in client.get_primaries():
            # On the connection that wrote: WAIT counts that connection's writes.
            replicas = await client.execute_command("WAIT", 1, 2000, target_nodes=primary)
            assert replicas == 1, "every replica has the writes before the crash"

        old = await cluster.kill_primary_for(KEYS[0])
        new = await cluster.failed_over(KEYS[0], old, deadline_s=15)

        assert new != old
        read = await eventually(lambda: client.mget_nonatomic(KEYS))
        assert read == [key.upper() for key in KEYS]
        await client.set(KEYS[0], "written after the failover")
        serving = client.get_node_from_key(KEYS[0])
        assert serving is not None
        assert serving.port == new
    finally:
        await client.aclose()


def child_processes() -> set[int]:
    """This process's children, running or not yet reaped (Linux's /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):  # a process that ended while listed
            # The name, in parentheses, may hold spaces; the state and parent follow it.
            _state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
            if int(parent) == os.getpid():
                children.add(int(stat.parent.name))
    return children


def only_on_path(monkeypatch: pytest.MonkeyPatch, directory: Path, **programs: str) -> None:
    """PATH is `directory` alone, where each name (`_` for `-`) is a link to a binary, or a
    script when given one."""
    directory.mkdir()
    for name, program in programs.items():
        target = directory / name.replace("_", "-")
        if program.startswith("#!"):
            target.write_text(program)
            target.chmod(0o755)
        else:
            target.symlink_to(program)
    monkeypatch.setenv("PATH", str(directory))


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed: ./scripts/test installs it"
    return binary


@pytest.mark.parametrize("sentinel_binary", [True, False], ids=["redis-sentinel", "--sentinel"])
async def test_a_sentinel_runs_from_its_own_binary_or_as_redis_server_sentinel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sentinel_binary: bool
) -> None:
    binary = redis_server_binary()
    names = {"redis_server": binary, **({"redis_sentinel": binary} if sentinel_binary else {})}
    only_on_path(monkeypatch, tmp_path / "bin", **names)
    config = tmp_path / "sentinel.conf"
    config.write_text("sentinel monitor elsewhere 127.0.0.1 1 2\n")
    sentinel = RedisServer(sentinel_config=config, extra_args=["--dir", str(tmp_path)])
    try:
        await sentinel.start()
        async with Redis(host="127.0.0.1", port=sentinel.port) as client:
            assert list(await client.sentinel_masters()) == ["elsewhere"]
    finally:
        await sentinel.stop()
    assert "sentinel myid" in config.read_text(), "the sentinel wrote its state to its file"


async def test_a_set_that_fails_to_start_says_why_and_leaves_nothing_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = "#!/bin/sh\necho 'sentinel: out of luck'\nexit 1\n"
    only_on_path(
        monkeypatch, tmp_path / "bin", redis_server=redis_server_binary(), redis_sentinel=broken
    )
    before = child_processes()
    sentinels = SentinelSet(password="data-pw-4")
    with pytest.raises(AssertionError, match="sentinel: out of luck"):
        await sentinels.start()
    assert child_processes() - before, "the master and its replica run until stopped"
    await sentinels.stop()
    assert child_processes() <= before


async def test_a_port_taken_before_its_server_binds_it_is_traded_for_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        offered = iter([port])
        monkeypatch.setattr(
            tests.support.redis_server, "free_port", lambda: next(offered, None) or free_port()
        )
        sentinels = SentinelSet()
        try:
            await sentinels.start()
            assert await sentinels.master_port() != port
        finally:
            await sentinels.stop()
