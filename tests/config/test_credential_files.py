"""Secret and token files read so that none can stall or swell the reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config.credential_files import (
    MAX_CREDENTIAL_FILE_BYTES,
    CredentialFileError,
    read_credential_file,
)


def test_a_regular_file_is_read_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("  the-secret\n")
    assert read_credential_file(path) == "the-secret"


def test_a_file_of_the_largest_size_taken_is_read(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"s" * MAX_CREDENTIAL_FILE_BYTES)
    assert len(read_credential_file(path)) == MAX_CREDENTIAL_FILE_BYTES


def test_a_symlink_to_a_regular_file_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("linked")
    (tmp_path / "secret").symlink_to(tmp_path / "real")
    assert read_credential_file(tmp_path / "secret") == "linked"


def fifo(path: Path) -> None:
    os.mkfifo(path)


def big(path: Path) -> None:
    # Sparse: a gigabyte named by mistake, of which only the first bytes may be read.
    with path.open("wb") as file:
        file.truncate(1 << 30)


def loop(path: Path) -> None:
    path.symlink_to(path)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(fifo, "not a regular file", id="a FIFO with no writer"),
        pytest.param(Path.mkdir, "not a regular file", id="a directory"),
        pytest.param(big, f"larger than {MAX_CREDENTIAL_FILE_BYTES} bytes", id="1 GB"),
        pytest.param(loop, "Too many levels of symbolic links", id="a symlink loop"),
        pytest.param(lambda path: None, "No such file or directory", id="missing"),
        pytest.param(lambda path: path.write_bytes(b"\xc3("), "not UTF-8 text", id="binary"),
        pytest.param(
            lambda path: path.write_text("old-secret\nnew-secret\n"),
            "more than one line",
            id="two lines",
        ),
        pytest.param(
            lambda path: path.write_bytes(b"old-secret\r\nnew-secret"),
            "more than one line",
            id="two lines, CRLF",
        ),
    ],
)
def test_what_cannot_be_a_credential_is_refused_at_once(
    tmp_path: Path, make: object, reason: str
) -> None:
    path = tmp_path / "secret"
    make(path)  # type: ignore[operator]
    with pytest.raises(CredentialFileError, match=reason):
        read_credential_file(path)


def test_a_device_is_refused_unread() -> None:
    with pytest.raises(CredentialFileError, match="not a regular file"):
        read_credential_file(Path("/dev/zero"))


def test_a_byte_order_mark_is_refused_saying_so(tmp_path: Path) -> None:
    # Some editors write one at the start of a UTF-8 file: invisible, yet part of the value,
    # so every sign made with it would be refused.
    path = tmp_path / "secret"
    path.write_bytes(b"\xef\xbb\xbfthe-app-secret\n")
    with pytest.raises(CredentialFileError, match="byte order mark") as caught:
        read_credential_file(path)
    assert "the-app-secret" not in str(caught.value)
