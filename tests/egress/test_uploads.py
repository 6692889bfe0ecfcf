"""The spool of an uploaded file: in memory while small, on disk beyond its share."""

from __future__ import annotations

import pytest
from aiohttp import payload

from gateway.egress.uploads import SPOOL_MEMORY_BYTES, FilePart, _reason


class Collected:
    """A stream writer that keeps what a payload writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self.data += chunk


def spooled(memory_limit: int, data: bytes) -> FilePart:
    file = FilePart("fileData", "a.bin", "application/octet-stream", memory_limit)
    for start in range(0, len(data), 4096):
        file.write(data[start : start + 4096])
    return file


async def sent(file: FilePart) -> bytes:
    writer = Collected()
    await file.payload().write(writer)  # type: ignore[arg-type]
    return bytes(writer.data)


@pytest.mark.parametrize(
    ("memory_limit", "size", "in_memory"),
    [
        pytest.param(SPOOL_MEMORY_BYTES, 1000, True, id="small"),
        pytest.param(SPOOL_MEMORY_BYTES, SPOOL_MEMORY_BYTES, True, id="exactly the limit"),
        pytest.param(SPOOL_MEMORY_BYTES, SPOOL_MEMORY_BYTES + 1, False, id="past the limit"),
        pytest.param(0, 10, False, id="no memory left"),
    ],
)
async def test_a_file_is_sent_byte_for_byte_from_memory_or_disk(
    memory_limit: int, size: int, in_memory: bool
) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    file = spooled(memory_limit, data)
    try:
        assert file.memory_bytes == (size if in_memory else 0)
        assert isinstance(file.payload(), payload.BytesPayload) is in_memory
        assert await sent(file) == data
        # A second send (a retried request) starts from the beginning again.
        assert await sent(file) == data
    finally:
        file.spool.close()


def test_a_multipart_failure_reason_is_redacted_before_it_is_cut() -> None:
    """A reason cut to 80 characters first kept the start of a JWT, which no longer matched
    the redaction pattern."""
    token = (
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJvcGVuSWQiOiJ1c2VyLTEifQ."
        "c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
    )
    reason = _reason(ValueError("no boundary after " + "x" * 40 + " " + token))
    assert len(reason) <= 81
    assert not any(token[i : i + 8] in reason for i in range(len(token) - 8))
