"""What every outbox keeps, whatever its store: each check takes an empty outbox, and
tests/callbacks/test_outbox_<store>.py runs them all against its store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.callbacks.outbox import DEAD, DELIVERED, PENDING, Outbox

Check = Callable[[Outbox], Awaitable[None]]
NOW = 1_700_000_000.0


async def one_row_per_trade_and_status(outbox: Outbox) -> None:
    assert await outbox.add("demo", "T1", 2, b'{"n": 1}', NOW)
    assert not await outbox.add("demo", "T1", 2, b"again", NOW + 1)
    assert await outbox.add("demo", "T1", 3, b"{}", NOW)
    assert await outbox.holds("T1", 2)
    assert not await outbox.holds("T1", 4)
    [first, second] = await outbox.listing((PENDING,))
    assert (first.app, first.trade_no, first.status, first.payload) == (
        "demo",
        "T1",
        2,
        b'{"n": 1}',
    )
    assert (first.state, first.attempts, first.last_error) == (PENDING, 0, "")
    assert (first.next_at, first.created_at) == (NOW, NOW)
    assert first.idempotency_key == "T1:2"
    assert second.id > first.id


async def a_due_delivery_is_leased_to_one_caller(outbox: Outbox) -> None:
    for n in range(3):
        await outbox.add("demo", f"T{n}", 2, b"{}", NOW + n)
    assert await outbox.due(NOW - 1, 10, lease_s=30) == []
    [first, second] = await outbox.due(NOW + 1, 10, lease_s=30)
    assert [first.trade_no, second.trade_no] == ["T0", "T1"]
    assert [d.trade_no for d in await outbox.due(NOW + 2, 10, lease_s=30)] == ["T2"]
    assert await outbox.due(NOW + 29, 10, lease_s=30) == []
    assert len(await outbox.due(NOW + 31, 1, lease_s=30)) == 1, "a lease runs out; a limit"


async def a_failure_waits_and_the_last_one_is_dead(outbox: Outbox) -> None:
    await outbox.add("demo", "T1", 2, b"{}", NOW)
    [delivery] = await outbox.due(NOW, 10, lease_s=30)
    await outbox.failed(delivery.id, "HTTP 500", NOW + 5, dead=False)
    assert await outbox.next_due_at() == NOW + 5
    assert await outbox.due(NOW + 4, 10, lease_s=30) == []
    [again] = await outbox.due(NOW + 5, 10, lease_s=30)
    assert (again.state, again.attempts, again.last_error) == (PENDING, 1, "HTTP 500")
    await outbox.failed(again.id, "ClientConnectorError", NOW + 10, dead=True)
    [dead] = await outbox.listing((PENDING, DEAD))
    assert (dead.state, dead.attempts, dead.last_error) == (DEAD, 2, "ClientConnectorError")
    assert await outbox.due(NOW + 100, 10, lease_s=30) == []
    assert await outbox.next_due_at() is None
    assert await outbox.counts() == {PENDING: 0, DEAD: 1}


async def a_dead_delivery_is_replayed_from_scratch(outbox: Outbox) -> None:
    await outbox.add("demo", "T1", 3, b"{}", NOW)
    [delivery] = await outbox.due(NOW, 10, lease_s=30)
    await outbox.failed(delivery.id, "HTTP 500", NOW, dead=True)
    assert await outbox.replay(delivery.id, NOW + 60)
    assert not await outbox.replay(delivery.id + 999, NOW + 60)
    [again] = await outbox.due(NOW + 60, 10, lease_s=30)
    assert (again.id, again.state, again.attempts, again.last_error) == (
        delivery.id,
        PENDING,
        0,
        "",
    )
    assert await outbox.counts() == {PENDING: 1, DEAD: 0}


async def a_delivered_one_is_done(outbox: Outbox) -> None:
    await outbox.add("demo", "T1", 2, b"{}", NOW)
    await outbox.add("demo", "T2", 2, b"{}", NOW)
    [first, _] = await outbox.due(NOW, 10, lease_s=30)
    await outbox.delivered(first.id)
    assert [d.trade_no for d in await outbox.listing((PENDING, DEAD))] == ["T2"]
    assert await outbox.counts() == {PENDING: 1, DEAD: 0}
    assert await outbox.holds("T1", 2), "a delivered callback is still known"
    assert DELIVERED not in {d.state for d in await outbox.listing((PENDING,))}


async def an_empty_outbox_has_nothing_due(outbox: Outbox) -> None:
    assert await outbox.next_due_at() is None
    assert await outbox.due(NOW, 10, lease_s=30) == []
    assert await outbox.listing((PENDING, DEAD)) == []
    assert await outbox.counts() == {PENDING: 0, DEAD: 0}
    await outbox.check_writable()


async def a_sign_is_seen_once_remembered(outbox: Outbox) -> None:
    assert not await outbox.sign_seen("s1", NOW)
    await outbox.remember_sign("s1", NOW, ttl_s=600)
    assert await outbox.sign_seen("s1", NOW + 1)
    assert not await outbox.sign_seen("s2", NOW + 1)


CONTRACT: list[Check] = [
    one_row_per_trade_and_status,
    a_due_delivery_is_leased_to_one_caller,
    a_failure_waits_and_the_last_one_is_dead,
    a_dead_delivery_is_replayed_from_scratch,
    a_delivered_one_is_done,
    an_empty_outbox_has_nothing_due,
    a_sign_is_seen_once_remembered,
]
