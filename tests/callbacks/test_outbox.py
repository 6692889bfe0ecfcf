"""The outbox translates its stores' own errors: callers only ever see OutboxError."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.callbacks.outbox import OutboxError, RedisOutbox, SqliteOutbox


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


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_redis_that_does_not_answer_is_an_outbox_error() -> None:
    outbox = RedisOutbox(f"redis://127.0.0.1:{closed_port()}/0", "neu:", 0.5)
    try:
        for call in (
            outbox.add("demo", "t1", 2, b"{}", 0.0),
            outbox.holds("t1", 2),
            outbox.sign_seen("s", 0.0),
            outbox.listing(("pending",)),
        ):
            with pytest.raises(OutboxError):
                await call
    finally:
        await outbox.close()
