"""The one capped read: all of a stream up to its limit, and never held past it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.sizes import gather_capped


class TooLarge(Exception):
    pass


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


async def test_exactly_the_limit_is_taken() -> None:
    assert await gather_capped(stream([b"ab", b"cd"], []), 4, TooLarge) == b"abcd"
    with pytest.raises(TooLarge):
        await gather_capped(stream([b"ab", b"cde"], []), 4, TooLarge)


async def test_an_endless_stream_stops_at_its_limit() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1024

    with pytest.raises(TooLarge):
        await gather_capped(endless(), 10_000, TooLarge)
