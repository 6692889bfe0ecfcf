"""Sizes shared by the gateway's readers of the network, and the one capped read."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable

# One read of a body or an answer: large enough that a big upload costs few calls, small
# enough that a read never holds much more than the limits allow.
READ_CHUNK_BYTES = 1 << 16


async def gather_capped(
    chunks: AsyncIterable[bytes], max_bytes: int, too_large: Callable[[], Exception]
) -> bytes:
    """All of `chunks` joined, or too_large()'s error as soon as they pass max_bytes, so an
    endless stream is never held past the limit."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise too_large()
    return bytes(body)
