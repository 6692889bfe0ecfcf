"""/readyz tells the truth about whether the outbox can take a write: a full disk, a read-only
one, failing writes, a Redis that refuses them.

The disk is a real one the test can fill: a 16 MiB tmpfs mounted for it (as root, as CI and
the project's test runs are; skipped where mounting is not permitted).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.callbacks.outbox import (
    OutboxError,
    OutboxNotWritable,
    RedisOutbox,
    SqliteOutbox,
)
from gateway.config.load import from_mapping
from gateway.runtime.app import create_app
from tests.conftest import guarded
from tests.support.platform_double import APPID, SECRET
from tests.support.redis_server import RedisServer

DISK_SIZE = 16 << 20


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A filesystem of its own, small enough to fill."""
    where = tmp_path / "disk"
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small filesystem to fill")
    mounted = mount("-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(where))
    if mounted.returncode != 0:
        pytest.skip(
            "mounting a small tmpfs to fill needs root (CAP_SYS_ADMIN): "
            + mounted.stderr.strip()[:200]
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path) -> Path:
    """Writes a file until the filesystem has no byte left; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="No space left") as full:  # noqa: PT012 - until one fails
            while True:
                os.write(fd, bytes(1 << 16))
    finally:
        os.close(fd)
    assert full.value.errno == errno.ENOSPC
    return filler


async def outbox_check(client: Any) -> tuple[int, str]:
    response = await client.get("/readyz")
    body = await response.json()
    return response.status, body["response"]["checks"]["outbox"]


async def test_readyz_says_the_outbox_cannot_write_while_its_disk_is_full(
    aiohttp_client: Any, tiny_disk: Path
) -> None:
    document = {
        "apps": {"demo": {"appid": APPID, "secret_env": "S", "upstream": "sandbox"}},
        "sandbox": {"listen": {"port": 0}},
        "callbacks": {"listen": {"port": 0}, "store": f"sqlite://{tiny_disk}/outbox.db"},
    }
    client = await aiohttp_client(guarded(create_app(from_mapping(document, {"S": SECRET}))))
    assert await outbox_check(client) == (200, "ok")
    filler = fill(tiny_disk)
    status, state = await outbox_check(client)
    assert status == 503
    assert state == (
        "unavailable (the filesystem holding the outbox has 0 bytes free, less than the "
        "4.0 MiB kept for it)"
    )
    filler.unlink()
    assert await outbox_check(client) == (200, "ok")


async def test_a_write_that_failed_is_reported_until_writes_go_through_again(
    tiny_disk: Path,
) -> None:
    # No free space kept: only the writes themselves can tell.
    outbox = SqliteOutbox(tiny_disk / "outbox.db", min_free_bytes=0)
    try:
        await outbox.check_writable()
        filler = fill(tiny_disk)
        with pytest.raises(OutboxError):
            await outbox.add("demo", "T1", 2, b"x" * 100_000, 0.0)
        with pytest.raises(OutboxNotWritable, match=r"writes to the outbox fail \(SQLITE_FULL\)"):
            await outbox.check_writable()
        filler.unlink()
        # The check's own write goes through: ready again without waiting for a callback.
        await outbox.check_writable()
        assert await outbox.add("demo", "T1", 2, b"x" * 100_000, 0.0)
    finally:
        await outbox.close()


async def test_a_read_only_filesystem_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after the kernel remounts a failing disk read-only (which a test cannot do to a
    filesystem with a file open for writing): the filesystem's own flag says so."""
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    real = os.statvfs(tmp_path)
    remounted = os.statvfs_result((*real[:8], real.f_flag | os.ST_RDONLY, real.f_namemax))
    try:
        await outbox.check_writable()
        monkeypatch.setattr(os, "statvfs", lambda path: remounted)
        with pytest.raises(
            OutboxNotWritable, match="the filesystem holding the outbox is read-only"
        ):
            await outbox.check_writable()
    finally:
        await outbox.close()


async def test_a_redis_that_refuses_writes_is_reported(redis_server: RedisServer) -> None:
    outbox = RedisOutbox(redis_server.url, "neu:", 0.5)
    admin = aioredis.from_url(redis_server.url)
    try:
        await outbox.check_writable()
        # Out of memory with nothing to evict: it answers PING, and refuses every write.
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", 1)
        assert await admin.ping()
        with pytest.raises(OutboxNotWritable, match="Redis refuses writes"):
            await outbox.check_writable()
        await admin.config_set("maxmemory", 0)
        await outbox.check_writable()
    finally:
        await admin.aclose()
        await outbox.close()
