"""A body's pace: how long the gateway may wait on it, and the clock that holds it to that."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from aiohttp import web

from gateway.config.schema import LimitsConfig
from gateway.core.errors import BodyTimeout
from gateway.http.bodies import BodyClock, BodyTimes
from tests.abuse.conftest import read_answer

MIB = 1 << 20


@pytest.mark.parametrize(
    ("times", "received", "allowed"),
    [
        pytest.param(BodyTimes(30, 1000, 5), 0, 5, id="nothing yet: the grace period"),
        pytest.param(BodyTimes(30, 1000, 5), 4000, 5, id="less than the grace pays for"),
        pytest.param(BodyTimes(30, 1000, 5), 12_000, 12, id="each 1000 bytes buy a second"),
        pytest.param(BodyTimes(30, 0, 5), 0, math.inf, id="no minimum rate"),
    ],
)
def test_the_wait_a_body_is_allowed(times: BodyTimes, received: int, allowed: float) -> None:
    assert times.allowed_wait_s(received) == allowed


def test_the_defaults_never_cut_off_a_100_mb_upload_at_1_mbit_a_second() -> None:
    times = BodyTimes.of(LimitsConfig())
    per_second = 1_000_000 // 8
    for second in range(1, 100 * MIB // per_second + 1):
        assert second <= times.allowed_wait_s(second * per_second)
    # While a byte a second is cut off once the grace period is over.
    assert times.allowed_wait_s(int(times.grace_s)) == times.grace_s


TIMES = BodyTimes(idle_s=5, min_rate=100, grace_s=0.3)
WANTED = 600


async def read_in_one_step(request: web.Request) -> web.Response:
    """Waits for WANTED bytes in a single step, as a multipart reader waits for a part's
    header lines, and says how it ended."""
    clock = BodyClock(request, TIMES)
    try:
        data = await clock.step(request.content.readexactly(WANTED))
    except BodyTimeout as exc:
        return web.json_response({"cut": exc.msg, "too_slow": clock.too_slow})
    return web.json_response({"read": len(data)})


async def sent_at(server: Any, piece: int, every_s: float) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % WANTED
    )
    answer = asyncio.create_task(read_answer(reader))
    sent = 0
    while sent < WANTED and not answer.done():
        writer.write(b"a" * piece)
        sent += piece
        # The client's own pace, ended early by an answer.
        await asyncio.wait([answer], timeout=every_s)  # wait-ok
    async with asyncio.timeout(10):
        answered = await answer
    writer.close()
    assert answered is not None
    return answered.body


@pytest.fixture
async def one_step_server(aiohttp_server: Any) -> Any:
    app = web.Application()
    app.router.add_post("/", read_in_one_step)
    return await aiohttp_server(app)


async def test_bytes_arriving_during_a_long_step_pay_for_more_waiting(
    one_step_server: Any,
) -> None:
    """400 bytes a second, four times the minimum, over a step of 1.5 s: five times the grace
    period, yet never behind."""
    assert await sent_at(one_step_server, 40, 0.1) == {"read": WANTED}


async def test_a_dribble_is_cut_off_mid_step_once_the_grace_is_over(one_step_server: Any) -> None:
    result = await sent_at(one_step_server, 2, 0.1)
    assert result["too_slow"] is True
    assert "min_body_rate_bytes_per_s (100 bytes a second)" in result["cut"]
