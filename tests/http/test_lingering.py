"""A refused connection's lingering: its reads dropped, its close put off while the client is
still sending, within LINGER_MAX_S and LINGER_BYTES."""

from __future__ import annotations

import asyncio

import pytest

from gateway.http import lingering
from gateway.http.lingering import LINGER_BYTES, Linger


class Closes:
    """What the linger's timer calls: counted, and awaitable."""

    def __init__(self) -> None:
        self.count = 0
        self.called = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.called.set()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> float:
    """A linger of a few milliseconds instead of LINGER_S."""
    monkeypatch.setattr(lingering, "LINGER_S", 0.02)
    return 0.02


def test_a_new_connection_reads_what_it_is_sent() -> None:
    assert not Linger().dropping


def test_reads_are_dropped_from_the_refusal_on() -> None:
    linger = Linger()
    linger.drop_reads()
    assert linger.dropping


async def test_a_quiet_client_is_closed_once_the_linger_is_over(quick: float) -> None:
    loop, close, linger = asyncio.get_running_loop(), Closes(), Linger()
    began = loop.time()
    linger.start(loop, close)
    assert linger.dropping
    async with asyncio.timeout(10):
        await close.called.wait()
    assert loop.time() - began >= quick


async def test_starting_again_keeps_the_first_close(quick: float) -> None:
    loop, close, linger = asyncio.get_running_loop(), Closes(), Linger()
    linger.start(loop, close)
    linger.start(loop, close)
    async with asyncio.timeout(10):
        await close.called.wait()
    linger.cancel()
    assert close.count == 1


async def test_bytes_that_come_put_the_close_off(quick: float) -> None:
    loop, close, linger = asyncio.get_running_loop(), Closes(), Linger()
    linger.start(loop, close)
    first = loop.time()
    assert linger.dropped(100, loop, close) is False
    async with asyncio.timeout(10):
        await close.called.wait()
    assert close.count == 1
    assert loop.time() - first >= quick


async def test_past_linger_bytes_the_connection_is_cut() -> None:
    loop, close, linger = asyncio.get_running_loop(), Closes(), Linger()
    linger.start(loop, close)
    assert linger.dropped(LINGER_BYTES, loop, close) is False
    assert linger.dropped(1, loop, close) is True
    linger.cancel()


async def test_past_linger_max_s_the_connection_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lingering, "LINGER_MAX_S", -1.0)
    loop, close, linger = asyncio.get_running_loop(), Closes(), Linger()
    linger.start(loop, close)
    assert linger.dropped(1, loop, close) is True
    linger.cancel()


async def test_before_the_refusal_is_answered_only_the_byte_bound_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refusal queued behind requests: what comes is dropped, and the close waits on them."""
    monkeypatch.setattr(lingering, "LINGER_MAX_S", -1.0)
    loop, close, linger = asyncio.get_running_loop(), Closes(), Linger()
    linger.drop_reads()
    assert linger.dropped(LINGER_BYTES, loop, close) is False
    assert linger.dropped(1, loop, close) is True
    assert close.count == 0


async def test_a_cancelled_linger_never_closes(quick: float) -> None:
    loop, close, linger = asyncio.get_running_loop(), Closes(), Linger()
    linger.start(loop, close)
    linger.cancel()
    linger.cancel()
    later = asyncio.Event()
    loop.call_later(quick * 3, later.set)
    async with asyncio.timeout(10):
        await later.wait()  # past when the close would have come
    assert close.count == 0
