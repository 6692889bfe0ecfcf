"""gather_capped: the whole body, or the caller's error as soon as it passes the cap."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.core.sizes import gather_capped


class TooLarge(Exception):
    pass


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_chunks_up_to_the_cap_are_joined() -> None:
    assert await gather_capped(chunks(b"ab", b"", b"cd"), 4, TooLarge) == b"abcd"
    assert await gather_capped(chunks(), 0, TooLarge) == b""


async def test_one_byte_past_the_cap_is_refused_without_reading_on() -> None:
    read = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            read.append(1)
            yield b"ab"

    with pytest.raises(TooLarge):
        await gather_capped(chunks(b"ab", b"cde"), 4, TooLarge)
    with pytest.raises(TooLarge):
        await gather_capped(endless(), 5, TooLarge)
    assert len(read) == 3
