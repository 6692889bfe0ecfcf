"""gather_capped: the whole body, or the caller's error as soon as it passes the cap."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


async def stream(chunks: list[bytes], consumed: list[int]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        consumed.append(len(chunk))
        yield chunk


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(min_value=0, max_value=600))
async def test_a_stream_within_its_limit_is_joined_and_one_past_it_refused(
    chunks: list[bytes], limit: int
) -> None:
    consumed: list[int] = []
    whole = b"".join(chunks)
    if len(whole) <= limit:
        assert await gather_capped(stream(chunks, consumed), limit, TooLarge) == whole
    else:
        with pytest.raises(TooLarge):
            await gather_capped(stream(chunks, consumed), limit, TooLarge)
        # Reading stopped at the chunk that passed the limit.
        assert sum(consumed) - consumed[-1] <= limit < sum(consumed)
