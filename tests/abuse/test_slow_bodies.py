"""Bodies dribbled just fast enough to dodge the idle timeout: cut off by their pace.

Each dribbling client sends a byte well within `limits.body_idle_timeout_s`, again and again,
as a slowloris would. `limits.min_body_rate_bytes_per_s` ends it once the gateway has waited
`limits.body_rate_grace_s` on the body, while a steady upload above that rate goes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from tests.abuse.conftest import (
    Answer,
    Target,
    assert_refused,
    for_this_test,
    read_answer,
    request_bytes,
    shared_target,
)
from tests.support.paths import SANDBOX_ECHO as ECHO

# The module's tests share a gateway, on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

PAY = "/callbacks/demo/pay"
FORM_TYPE = "application/x-www-form-urlencoded"
MIN_RATE = 1000
GRACE_S = 1.0
PACED = {"min_body_rate_bytes_per_s": MIN_RATE, "body_rate_grace_s": GRACE_S}
# A few bytes this often: four times within the idle timeout (1 s in these tests). A few,
# not one: a multipart reader waits for enough bytes to tell the data from a boundary.
DRIBBLE = b"aaaaaaaa"
DRIBBLE_EVERY_S = 0.25
# What a cut-off may take beyond its time: the timer, this test's own pacing and reading.
SLACK_S = 2.0
FILE_OPENING = b'--b\r\nContent-Disposition: form-data; name="fileData"; filename="f"\r\n\r\n'


@dataclass
class Dribbled:
    answer: Answer | None
    took_s: float  # from the first byte of the body to the answer


async def dribble(port: int, head: bytes, first: bytes, give_up_s: float) -> Dribbled:
    """Sends the head and `first`, then DRIBBLE every DRIBBLE_EVERY_S until answered (or
    `give_up_s` after the body began)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    started = time.monotonic()
    writer.write(first)
    answer_task = asyncio.create_task(read_answer(reader))
    try:
        while not answer_task.done() and time.monotonic() - started < give_up_s:
            writer.write(DRIBBLE)
            # The attacker's own pace, ended early by the answer.
            await asyncio.wait([answer_task], timeout=DRIBBLE_EVERY_S)  # wait-ok
    except ConnectionError:
        pass
    if not answer_task.done():
        answer_task.cancel()
        writer.transport.abort()
        return Dribbled(None, time.monotonic() - started)
    answer = await answer_task
    took = time.monotonic() - started
    # Closed after the 408: the answer says so and nothing follows it. The client says it is
    # done rather than wait out the gateway's linger (2 s a client here), which closes a quiet
    # connection by itself: test_slow_clients.py's refused body checks that.
    assert answer is None or answer.headers.get("connection") == "close", answer
    with contextlib.suppress(ConnectionError):
        writer.write_eof()
    assert await reader.read() == b""
    writer.close()
    return Dribbled(answer, took)


def head_of(path: str, content_type: str, length: int) -> bytes:
    headers = {"Content-Type": content_type, "Content-Length": str(length)}
    return request_bytes("POST", path, b"", headers)


def assert_cut_for_its_pace(dribbled: Dribbled, within_s: float) -> None:
    assert dribbled.answer is not None, f"still not cut off after {dribbled.took_s:.1f} s"
    assert_refused(dribbled.answer, 408, "body_timeout")
    assert "min_body_rate_bytes_per_s" in dribbled.answer.body["responseHeader"]["msg"]
    assert dribbled.took_s < within_s + SLACK_S, dribbled.took_s


async def echo_calls(target: Target) -> int:
    answer = await exchange_json(target.sandbox_port, request_bytes("GET", "/sandbox/stats"))
    calls: dict[str, int] = answer.body["response"]["calls"]
    return calls.get(ECHO, 0)


async def exchange_json(port: int, raw: bytes) -> Answer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    try:
        async with asyncio.timeout(10):
            answer = await read_answer(reader)
    finally:
        writer.close()
    assert answer is not None
    return answer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_paced(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    async with shared_target(tmp_path_factory, limits=PACED) as target:
        yield target


@pytest_asyncio.fixture(loop_scope="module")
async def paced(module_paced: Target) -> Target:
    """A gateway that cuts slow bodies off by their pace, shared by the module's tests."""
    return await for_this_test(module_paced)


@pytest.mark.parametrize(
    ("listener", "content_type", "first"),
    [
        pytest.param("gateway", FORM_TYPE, b"a=1&b=", id="form POST"),
        pytest.param("gateway", "multipart/form-data; boundary=b", FILE_OPENING, id="upload"),
        pytest.param("callbacks", FORM_TYPE, b"tradeNo=", id="payment callback"),
    ],
)
async def test_a_body_dribbled_within_the_idle_timeout_is_cut_off_for_its_pace(
    paced: Target, listener: str, content_type: str, first: bytes
) -> None:
    port, path = (paced.port, ECHO) if listener == "gateway" else (paced.callbacks_port, PAY)
    calls_before = await echo_calls(paced)
    async with paced.under_abuse(max_growth_mb=8):
        results = await asyncio.gather(
            *(
                dribble(port, head_of(path, content_type, 50_000), first, GRACE_S + 2 * SLACK_S)
                for _ in range(10)
            )
        )
    for dribbled in results:
        # The bytes it sent pay for far less than the grace period: cut off at its end.
        assert_cut_for_its_pace(dribbled, GRACE_S)
    # Nothing of it reached the platform: a body is read whole before anything is sent.
    assert await echo_calls(paced) == calls_before


async def test_a_fast_start_buys_only_the_time_its_bytes_pay_for(paced: Target) -> None:
    """3000 bytes at once, then a dribble: cut off once the gateway has waited 3 s on it."""
    head = head_of(ECHO, "multipart/form-data; boundary=b", 100_000)
    first = FILE_OPENING + b"x" * (3 * MIN_RATE - len(FILE_OPENING))
    dribbled = await dribble(paced.port, head, first, 3 + 2 * SLACK_S)
    assert_cut_for_its_pace(dribbled, 3.0)
    assert dribbled.took_s > 2.5, "cut off before its bytes' time was up"


async def test_a_steady_upload_above_the_rate_goes_through(paced: Target) -> None:
    """Three times the minimum rate for several times the grace period and the idle timeout."""
    piece = b"\x00" * (3 * MIN_RATE // 10)
    pieces = 40
    closing = b"\r\n--b--\r\n"
    size = len(FILE_OPENING) + len(piece) * pieces + len(closing)
    reader, writer = await asyncio.open_connection("127.0.0.1", paced.port)
    writer.write(head_of(ECHO, "multipart/form-data; boundary=b", size) + FILE_OPENING)
    answer_task = asyncio.create_task(read_answer(reader))
    async with paced.under_abuse(max_growth_mb=8):
        for _ in range(pieces):
            writer.write(piece)
            await writer.drain()
            # The client's own steady pace; an early answer ends it.
            await asyncio.wait([answer_task], timeout=0.1)  # wait-ok
            assert not answer_task.done(), answer_task.result()
        writer.write(closing)
        async with asyncio.timeout(10):
            answer = await answer_task
    writer.close()
    assert answer is not None
    assert answer.status == 200, answer
    assert answer.body["response"]["files"][0]["size"] == len(piece) * pieces
