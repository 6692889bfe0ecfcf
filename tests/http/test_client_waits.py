"""What a connection waits on its client for, and since when: the order in which a full
listener closes connections for new ones."""

from __future__ import annotations

import asyncio

import pytest

from gateway.http.client_waits import (
    ANSWER,
    BODY,
    HEADERS,
    IDLE,
    REFUSED,
    WAITING_ON,
    ClientWaits,
)


def waits(serial: int = 7) -> ClientWaits:
    made = ClientWaits()
    made.serial = serial
    made.idle_since, made.headers_since = 10.0, 20.0
    return made


def test_an_idle_connection_waits_since_it_went_idle() -> None:
    assert waits().longest(handling=False, pending=False, in_headers=False) == (10.0, 7, IDLE)


def test_a_header_block_under_way_waits_since_it_began() -> None:
    assert waits().longest(handling=False, pending=False, in_headers=True) == (20.0, 7, HEADERS)


def test_a_request_waiting_for_its_handler_is_not_waiting_on_the_client() -> None:
    assert waits().longest(handling=False, pending=True, in_headers=True) is None


def test_a_handler_at_work_is_not_waiting_on_the_client() -> None:
    assert waits().longest(handling=True, pending=False, in_headers=False) is None


async def test_a_handler_waiting_for_body_bytes_waits_since_that_read_began() -> None:
    made = waits()
    made.body_wait_began(asyncio.timeout(10), 30.0)
    assert made.longest(handling=True, pending=False, in_headers=False) == (30.0, 7, BODY)
    made.body_wait_ended()
    assert made.longest(handling=True, pending=False, in_headers=False) is None


def test_an_unread_answer_comes_before_anything_else() -> None:
    made = waits()
    made.send_stalled_since = 40.0
    for handling in (False, True):
        assert made.longest(handling=handling, pending=True, in_headers=True) == (40.0, 7, ANSWER)


def test_an_answer_makes_the_connection_idle_from_then() -> None:
    made = waits()
    made.body_since = 30.0
    made.answered(50.0)
    assert (made.idle_since, made.body_since) == (50.0, None)


async def test_cutting_a_body_short_ends_its_read_now() -> None:
    made = waits()
    loop = asyncio.get_running_loop()

    async def read_forever() -> None:
        async with asyncio.timeout(10) as deadline:
            made.body_wait_began(deadline, loop.time())
            assert made.cut_body_short(loop.time())
            await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await read_forever()
    assert made.evicted


def test_without_a_body_read_there_is_nothing_to_cut_short() -> None:
    made = waits()
    assert not made.cut_body_short(0.0)
    assert not made.evicted


def test_every_state_has_its_label() -> None:
    assert set(WAITING_ON) == {IDLE, HEADERS, BODY, ANSWER, REFUSED}
    assert sorted(WAITING_ON.values()) == ["answer", "body", "headers", "idle", "refused"]
