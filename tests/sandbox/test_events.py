"""The simulator page's news: numbered events of a few kinds, and waits they end."""

from __future__ import annotations

import asyncio
import time

from gateway.sandbox.events import KEEP, Events


def test_events_name_each_kind_once_and_send_a_late_reader_to_reload_all() -> None:
    events = Events()
    assert events.since(0) == []
    for kind in ("users", "trades", "users"):
        events.publish(kind)
    assert events.version == 3
    assert events.since(0) == ["users", "trades"]
    assert events.since(2) == ["users"]
    assert events.since(3) == []
    for _ in range(KEEP):
        events.publish("requests")
    assert events.since(1) == ["all"]
    assert events.since(3) == ["requests"], "the oldest kept is the one after 3"
    assert events.since(events.version - 1) == ["requests"]


async def test_an_event_wakes_a_waiter() -> None:
    events = Events()
    waiting = asyncio.create_task(events.wait(0, timeout_s=30))
    await asyncio.sleep(0)  # wait-ok: lets the waiter start waiting
    events.publish("users")
    async with asyncio.timeout(5):
        await waiting


async def test_news_already_there_or_a_close_ends_a_wait_at_once() -> None:
    events = Events()
    events.publish("users")
    async with asyncio.timeout(5):
        await events.wait(0, timeout_s=30)
    waiting = asyncio.create_task(events.wait(events.version, timeout_s=30))
    await asyncio.sleep(0)  # wait-ok: lets the waiter start waiting
    events.close()
    async with asyncio.timeout(5):
        await waiting
        await events.wait(events.version, timeout_s=30)
    assert events.closed


async def test_a_wait_without_news_ends_after_its_timeout() -> None:
    events = Events()
    started = time.monotonic()
    await events.wait(0, timeout_s=0.05)
    assert time.monotonic() - started >= 0.05
    assert events.since(0) == []
