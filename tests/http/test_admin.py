"""The operator's endpoints: /healthz, /readyz (with its checks and draining) and /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.http.admin import (
    CHECK_TIMEOUT_S,
    REPORT_WAIT_S,
    Readiness,
    Unusable,
    admin_routes,
)
from gateway.metrics import CONTENT_TYPE, Metrics
from tests.support.clock import MutableClock
from tests.support.waiting import until


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def readiness(clock: MutableClock) -> Readiness:
    readiness = Readiness(clock)
    readiness.started()
    return readiness


@pytest.fixture
async def client(aiohttp_client: Any, readiness: Readiness) -> TestClient[Any, Any]:
    app = web.Application()
    app.router.add_routes(admin_routes(readiness, Metrics()))
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


async def fine() -> None:
    return None


async def unusable() -> None:
    raise Unusable("the outbox's disk is full")


async def broken() -> None:
    raise ConnectionRefusedError("127.0.0.1:6379, with details no probe needs")


async def test_healthz_says_ok(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {
        "responseHeader": {"status": 200, "msg": "OK"},
        "response": {"status": "ok"},
    }


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_take_head(client: TestClient[Any, Any], path: str) -> None:
    assert (await client.head(path)).status == 200


async def test_readyz_with_every_check_ok_is_ready(
    client: TestClient[Any, Any], readiness: Readiness
) -> None:
    readiness.add_check("outbox", fine)
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["response"] == {"status": "ready", "checks": {"outbox": "ok"}}


async def test_readyz_with_a_check_down_is_503_naming_it(
    client: TestClient[Any, Any], readiness: Readiness
) -> None:
    readiness.add_check("outbox", unusable)
    readiness.add_check("cache", broken)
    readiness.add_check("other", fine)
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["error"] == "not_ready"
    assert body["response"]["checks"] == {
        "outbox": "unavailable (the outbox's disk is full)",
        "cache": "unavailable (ConnectionRefusedError)",
        "other": "ok",
    }
    message = body["responseHeader"]["msg"]
    assert message.startswith("not ready: outbox: unavailable")
    assert "with details" not in message


async def test_readyz_while_starting_is_503(clock: MutableClock, aiohttp_client: Any) -> None:
    readiness = Readiness(clock)
    readiness.add_check("upstream", fine)
    app = web.Application()
    app.router.add_routes(admin_routes(readiness, Metrics()))
    client = await aiohttp_client(app)
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["responseHeader"]["msg"] == "not ready: starting: not serving yet"
    readiness.started()
    assert (await client.get("/readyz")).status == 200


async def test_a_check_not_required_is_reported_but_leaves_it_ready(
    client: TestClient[Any, Any], readiness: Readiness
) -> None:
    readiness.add_check("cache", broken, required=False)
    readiness.add_check("upstream", fine)
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["response"] == {
        "status": "ready",
        "checks": {"cache": "unavailable (ConnectionRefusedError)", "upstream": "ok"},
    }


async def test_a_required_check_down_beside_one_not_required_names_only_the_required(
    client: TestClient[Any, Any], readiness: Readiness
) -> None:
    readiness.add_check("cache", broken, required=False)
    readiness.add_check("outbox", unusable)
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["responseHeader"]["msg"] == (
        "not ready: outbox: unavailable (the outbox's disk is full)"
    )


async def test_each_check_tells_its_outcome_every_time_it_is_asked(
    client: TestClient[Any, Any], readiness: Readiness
) -> None:
    told: list[tuple[str, bool]] = []
    down = False

    async def flips() -> None:
        if down:
            raise ConnectionRefusedError

    readiness.add_check("cache", flips, False, lambda up: told.append(("cache", up)))
    readiness.add_check("outbox", unusable, True, lambda up: told.append(("outbox", up)))
    await client.get("/readyz")
    down = True
    assert await readiness.state("cache") == "unavailable (ConnectionRefusedError)"
    # Asked at once, in no set order.
    assert sorted(told[:2]) == [("cache", True), ("outbox", False)]
    assert told[2:] == [("cache", False)]


async def test_readyz_while_draining_is_503_first_of_all(
    client: TestClient[Any, Any], readiness: Readiness
) -> None:
    readiness.add_check("outbox", fine)
    readiness.draining = True
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["responseHeader"]["msg"].startswith("not ready: draining")
    assert body["response"]["checks"] == {"outbox": "ok"}


async def test_a_removed_check_is_no_longer_asked(
    client: TestClient[Any, Any], readiness: Readiness
) -> None:
    readiness.add_check("outbox", unusable)
    readiness.remove_check("outbox")
    readiness.remove_check("never added")
    assert (await client.get("/readyz")).status == 200


async def test_a_check_that_does_not_answer_in_time_counts_as_down(
    readiness: Readiness, clock: MutableClock
) -> None:
    asked = asyncio.Event()

    async def hangs() -> None:
        asked.set()
        await asyncio.Event().wait()

    readiness.add_check("redis", hangs)
    report = asyncio.ensure_future(readiness.report())
    async with asyncio.timeout(10):
        await asked.wait()
    await clock.until_sleeping()
    clock.advance(CHECK_TIMEOUT_S)
    async with asyncio.timeout(10):
        assert await report == {"redis": f"no answer within {CHECK_TIMEOUT_S:g} s"}


async def test_shared_backends_that_hang_delay_readyz_only_briefly_and_are_asked_once(
    client: TestClient[Any, Any], readiness: Readiness, clock: MutableClock
) -> None:
    # A Redis that accepts and never answers, behind the cache and the outbox: a probe whose
    # answer waited for their pings (a second each, one after the other) would outlast
    # Kubernetes' default 1 s probe timeout and take every replica out at once.
    asked: list[str] = []
    answered: list[tuple[str, bool]] = []

    def hanging(name: str) -> Any:
        async def ping() -> None:
            asked.append(name)
            await asyncio.Event().wait()

        return ping

    for name in ("cache", "outbox"):
        readiness.add_check(
            name, hanging(name), False, lambda up, name=name: answered.append((name, up))
        )
    readiness.add_check("upstream", fine)
    first = asyncio.ensure_future(client.get("/readyz"))
    # Each hanging check's own timeout, and the report's wait for the two of them.
    await clock.until_sleeping(4)
    clock.advance(REPORT_WAIT_S)
    async with asyncio.timeout(10):
        response = await first
    assert response.status == 200
    waited = f"no answer within {REPORT_WAIT_S:g} s (still asked, up to {CHECK_TIMEOUT_S:g} s)"
    assert (await response.json())["response"]["checks"] == {
        "cache": waited,
        "outbox": waited,
        "upstream": "ok",
    }
    # A probe while they are still being asked joins those pings rather than piling up more.
    second = asyncio.ensure_future(client.get("/readyz"))
    await clock.until_sleeping(4)
    clock.advance(REPORT_WAIT_S)
    async with asyncio.timeout(10):
        assert (await second).status == 200
    assert sorted(asked) == ["cache", "outbox"]
    # The pings still end at their own timeout, and tell the gauge the backends are down.
    await clock.until_sleeping(2)
    clock.advance(CHECK_TIMEOUT_S)
    await until(lambda: len(answered) == 2)
    assert sorted(answered) == [("cache", False), ("outbox", False)]


async def test_metrics_are_the_registrys_exposition(client: TestClient[Any, Any]) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE
    assert b"neu_gateway_build_info{" in await response.read()
