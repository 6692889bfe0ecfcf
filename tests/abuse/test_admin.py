"""The admin endpoints need no token, so they are attacked too: /metrics must not grow with
what callers send, nor tell them anything secret."""

from __future__ import annotations

import asyncio
import random
import string

import aiohttp
import pytest

from tests.abuse.conftest import Target, assert_refused, exchange, request_bytes
from tests.support.platform_double import SECRET

# The module's tests share a gateway, on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

PAY = "/callbacks/{app}/pay"


async def series(session: aiohttp.ClientSession, target: Target) -> list[str]:
    async with session.get(target.url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def junk(rng: random.Random, length: int = 12) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=length))


async def test_hostile_requests_do_not_grow_the_metrics(target: Target) -> None:
    rng = random.Random(7)
    async with aiohttp.ClientSession() as session:
        # One of each kind first, so every bounded series that can exist does.
        await hostile_round(session, target, rng)
        before = await series(session, target)
        async with target.under_abuse(max_growth_mb=30):
            for _ in range(100):
                await hostile_round(session, target, rng)
        after = await series(session, target)
    grown = {line.rsplit(" ", 1)[0] for line in after} - {line.rsplit(" ", 1)[0] for line in before}
    assert grown == set(), f"new series: {sorted(grown)[:5]}"
    text = "\n".join(after)
    assert SECRET not in text


async def hostile_round(session: aiohttp.ClientSession, target: Target, rng: random.Random) -> None:
    made_up = f"/neuopenapi/{junk(rng)}/{junk(rng)}"
    calls = [
        session.get(target.url + made_up),
        session.post(target.url + made_up, data={"a": "1"}),
        session.get(target.url + made_up, headers={"X-Neu-App": junk(rng)}),
        session.get(target.url + made_up, headers={"Authorization": "Bearer " + junk(rng, 32)}),
        session.request(rng.choice(["PATCH", "DELETE", "PROPFIND", "PURGE"]), target.url + made_up),
        session.get(target.url + "/" + junk(rng)),
        session.post(target.callbacks_url + PAY.format(app=junk(rng)), data={"tradeNo": "T"}),
    ]
    for call in calls:
        async with call as response:
            await response.read()
            assert response.status < 500


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_admin_paths_take_get_and_head_only(target: Target, path: str) -> None:
    answer = await exchange(target.port, request_bytes("POST", path, b"x=1"))
    assert_refused(answer, 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/metrics/", "//metrics", "/METRICS", "/metrics%2f", "/readyz/x"])
async def test_near_misses_of_admin_paths_are_404(target: Target, path: str) -> None:
    answer = await exchange(target.port, request_bytes("GET", path))
    assert_refused(answer, 404, "not_found")


async def test_scrapes_in_parallel_keep_both_listeners_answering(target: Target) -> None:
    async with aiohttp.ClientSession() as session, target.under_abuse(max_growth_mb=30):
        for _ in range(10):
            scrapes = [series(session, target) for _ in range(20)]
            assert all(await asyncio.gather(*scrapes))


async def test_requests_refused_before_any_handler_are_counted(target: Target) -> None:
    async with aiohttp.ClientSession() as session:
        before = refused_before_any_handler(await series(session, target))
        await exchange(target.port, b"BROKEN\r\n\r\n")
        big = request_bytes("GET", "/neuopenapi/x", headers={"X-Big": "y" * 70000})
        await exchange(target.port, big)
        after = refused_before_any_handler(await series(session, target))
    # Counted from this test's start: the module's earlier tests were refused some too.
    assert after.get("400", 0) - before.get("400", 0) >= 1
    assert after.get("431", 0) - before.get("431", 0) >= 1


def refused_before_any_handler(lines: list[str]) -> dict[str, float]:
    """neu_gateway_requests_total of no app and no known method, by status."""
    return {
        line.rsplit(" ", 1)[0].split('status="')[1].rstrip('"}'): float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("neu_gateway_requests_total{")
        and 'app="none"' in line
        and 'method="other"' in line
    }
