"""Single flight: askers of one key share one call and its outcome; one that leaves does not
take the call from the others."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core.flights import SingleFlight


async def test_concurrent_askers_share_one_call() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def call() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    askers = [asyncio.ensure_future(flights.run("k", call)) for _ in range(3)]
    await asyncio.sleep(0)  # wait-ok: lets the three askers reach the flight
    release.set()
    results = await asyncio.gather(*askers)
    assert calls == 1
    assert [value for value, _ in results] == [42, 42, 42]
    assert [shared for _, shared in results] == [False, True, True]


async def test_another_key_is_another_call_and_a_landed_flight_is_forgotten() -> None:
    flights: SingleFlight[str, str] = SingleFlight()

    async def call_for(key: str) -> str:
        return key

    assert await flights.run("a", lambda: call_for("a")) == ("a", False)
    assert await flights.run("b", lambda: call_for("b")) == ("b", False)
    # Landed: the next ask is a new call, not a shared old one.
    assert await flights.run("a", lambda: call_for("again")) == ("again", False)


async def test_every_asker_gets_the_calls_error() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def failing() -> int:
        await release.wait()
        raise ValueError("upstream down")

    askers = [asyncio.ensure_future(flights.run("k", failing)) for _ in range(2)]
    await asyncio.sleep(0)  # wait-ok: lets both askers reach the flight
    release.set()
    for asker in askers:
        with pytest.raises(ValueError, match="upstream down"):
            await asker


async def test_an_asker_that_leaves_does_not_cancel_the_call_for_the_others() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()
    finished = asyncio.Event()

    async def call() -> int:
        await release.wait()
        finished.set()
        return 7

    leaving = asyncio.ensure_future(flights.run("k", call))
    staying = asyncio.ensure_future(flights.run("k", call))
    await asyncio.sleep(0)  # wait-ok: lets both askers reach the flight
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    release.set()
    assert await staying == (7, True)
    assert finished.is_set()


async def test_a_failed_flight_nobody_awaits_leaves_no_unretrieved_error(
    recwarn: pytest.WarningsRecorder,
) -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()
    landed = asyncio.Event()

    async def failing() -> int:
        await release.wait()
        landed.set()
        raise ValueError("nobody listens")

    asker = asyncio.ensure_future(flights.run("k", failing))
    await asyncio.sleep(0)  # wait-ok: lets the asker reach the flight
    asker.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asker

    # The flight lands on its own; a new ask starts a new call.
    async def fine() -> int:
        return 1

    await landed.wait()
    # Until the flight has landed a new ask shares it (and its error); then it is a new call.
    async with asyncio.timeout(5):
        while True:
            try:
                outcome = await flights.run("k", fine)
                break
            except ValueError:
                await asyncio.sleep(0)  # wait-ok: the flight lands on a later turn
    assert outcome == (1, False)
    assert not [w for w in recwarn if "exception was never retrieved" in str(w.message)]
