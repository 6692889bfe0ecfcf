"""The SQLite outbox: the contract every outbox keeps, its file, its signal of another
process's change, and what /readyz learns of its disk.

The disk is a real one the test can fill: a 16 MiB tmpfs mounted for it (as root, as CI and
the project's test runs are; skipped where mounting is not permitted).
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.callbacks.outbox import (
    SQLITE_CHANGE_CHECK_S,
    OutboxError,
    OutboxNotWritable,
    SqliteOutbox,
    sqlite_path,
)
from gateway.config.load import from_mapping
from gateway.runtime.app import create_app
from tests.callbacks.outbox_contract import CONTRACT, NOW, Check
from tests.conftest import guarded
from tests.support.clock import MutableClock
from tests.support.platform_double import APPID, SECRET

DISK_SIZE = 16 << 20


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[SqliteOutbox]:
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    yield outbox
    await outbox.close()


@pytest.mark.parametrize("check", CONTRACT, ids=[check.__name__ for check in CONTRACT])
async def test_the_outbox_contract(outbox: SqliteOutbox, check: Check) -> None:
    await check(outbox)


def test_a_store_url_names_an_absolute_path() -> None:
    assert sqlite_path("sqlite:///var/lib/neu/outbox.db") == Path("/var/lib/neu/outbox.db")


async def test_rows_outlive_the_process_that_wrote_them(tmp_path: Path) -> None:
    first = SqliteOutbox(tmp_path / "deep" / "folder" / "outbox.db")
    await first.add("demo", "T1", 2, b"{}", NOW)
    await first.close()
    again = SqliteOutbox(tmp_path / "deep" / "folder" / "outbox.db")
    try:
        assert await again.holds("T1", 2)
    finally:
        await again.close()


async def test_a_sign_is_forgotten_when_its_window_has_passed(outbox: SqliteOutbox) -> None:
    await outbox.remember_sign("s1", NOW, ttl_s=600)
    assert await outbox.sign_seen("s1", NOW + 599)
    assert not await outbox.sign_seen("s1", NOW + 600)


def test_an_outbox_that_cannot_be_opened_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutboxError):
        SqliteOutbox(blocker / "outbox.db")


async def test_a_broken_sqlite_file_is_an_outbox_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = SqliteOutbox(path)
    await outbox.close()
    path.write_bytes(b"this is not a database" * 100)
    # Opening reads the schema, so a file that is not a database fails there already.
    with pytest.raises(OutboxError):
        SqliteOutbox(path)


async def test_another_processs_change_is_signalled(tmp_path: Path) -> None:
    clock = MutableClock()
    outbox, other = SqliteOutbox(tmp_path / "o.db", clock), SqliteOutbox(tmp_path / "o.db", clock)
    changes = outbox.changes()
    try:
        await other.add("demo", "T1", 2, b"{}", NOW)
        [delivery] = await other.due(NOW, 10, lease_s=30)
        await other.failed(delivery.id, "HTTP 500", NOW, dead=True)
        first_look = asyncio.ensure_future(changes.__anext__())
        await clock.until_sleeping()
        assert await other.replay(delivery.id, NOW)
        clock.advance(SQLITE_CHANGE_CHECK_S)
        async with asyncio.timeout(5):
            await first_look
    finally:
        await changes.aclose()
        await other.close()
        await outbox.close()


# Whether it can take a write


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


@pytest.mark.parametrize(
    ("ready_requires", "status_when_full"),
    [([], 200), (["outbox"], 503)],
    ids=["reported only", "required by admin.ready_requires"],
)
async def test_readyz_says_the_outbox_cannot_write_while_its_disk_is_full(
    aiohttp_client: Any, tiny_disk: Path, ready_requires: list[str], status_when_full: int
) -> None:
    document = {
        "apps": {"demo": {"appid": APPID, "secret_env": "S", "upstream": "sandbox"}},
        "sandbox": {"listen": {"port": 0}},
        "callbacks": {"listen": {"port": 0}, "store": f"sqlite://{tiny_disk}/outbox.db"},
        "admin": {"ready_requires": ready_requires},
    }
    client = await aiohttp_client(guarded(create_app(from_mapping(document, {"S": SECRET}))))
    assert await outbox_check(client) == (200, "ok")
    filler = fill(tiny_disk)
    status, state = await outbox_check(client)
    assert status == status_when_full
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


async def test_too_little_free_space_is_reported_with_both_sizes(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    outbox = SqliteOutbox(tmp_path / "outbox.db", min_free_bytes=free + (64 << 30))
    try:
        with pytest.raises(OutboxNotWritable, match=r"MiB free, less than the .* kept for it"):
            await outbox.check_writable()
    finally:
        await outbox.close()
