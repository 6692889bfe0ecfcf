"""The lean client's cap (Slots) and its pools by origin (Origins). Pools against scripted
upstreams are tested in tests/upstream/test_lean.py and test_lean_adversary.py."""

from __future__ import annotations

import asyncio

import pytest
from yarl import URL

from gateway.upstream.lean.pool import Origins, Slots
from gateway.upstream.tls import default_context


def deadline(seconds: float = 5) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_no_cap_never_makes_a_call_wait() -> None:
    slots = Slots(0)
    for _ in range(1000):
        await slots.take(deadline())
    assert slots.room(idle=10_000)


async def test_room_counts_the_idle_connections_with_the_taken_slots() -> None:
    slots = Slots(2)
    await slots.take(deadline())
    assert slots.room(idle=1)
    assert not slots.room(idle=2)


async def test_a_slot_given_back_goes_to_the_longest_waiter_first() -> None:
    slots = Slots(1)
    await slots.take(deadline())
    order: list[str] = []

    async def wait(name: str) -> None:
        await slots.take(deadline())
        order.append(name)

    first = asyncio.ensure_future(wait("first"))
    await asyncio.sleep(0)  # wait-ok: one turn, so the first waiter queues before the second
    second = asyncio.ensure_future(wait("second"))
    await asyncio.sleep(0)  # wait-ok: one turn, so the second waiter queues
    slots.give_back()
    await first
    assert order == ["first"]
    slots.give_back()
    await second
    assert order == ["first", "second"]
    slots.give_back()
    assert slots.room(idle=0)


async def test_a_wait_past_its_deadline_leaves_the_queue() -> None:
    slots = Slots(1)
    await slots.take(deadline())
    with pytest.raises(TimeoutError):
        await slots.take(deadline(0.01))
    slots.give_back()
    # The slot was not handed to the waiter that left: the next call takes it at once.
    await slots.take(deadline(0.01))


async def test_origins_keep_one_pool_per_origin_under_one_cap() -> None:
    slots = Slots(3)
    origins = Origins(default_context(), None, slots, 30)
    one = origins.pool(URL("http://platform.test:8080/a"))
    assert origins.pool(URL("http://platform.test:8080/b?q=1")) is one
    other_port = origins.pool(URL("http://platform.test:8081/a"))
    other_scheme = origins.pool(URL("https://platform.test:8080/a"))
    assert len({id(one), id(other_port), id(other_scheme)}) == 3
    assert one.host_header == "platform.test:8080"
    for pool in (one, other_port, other_scheme):
        assert pool._slots is slots
    origins.close()
    assert origins.pool(URL("http://platform.test:8080/a")) is not one
