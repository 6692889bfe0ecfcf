"""The collector's settings for a serving process, and what they rest on: a request leaves no
reference cycle, so reference counting frees all it made."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from gateway.runtime import heap
from tests.conftest import GatewayFactory
from tests.support.paths import ECHO, UPLOAD
from tests.support.platform_double import PlatformDouble
from tests.support.processes import StartGateway, write_config

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_settle_freezes_what_exists_and_makes_young_passes_rare() -> None:
    before = gc.get_threshold()
    built_to_start = [object(), {"a": [1]}]

    settled = heap.settle()

    assert settled.frozen == gc.get_freeze_count() > 0
    assert settled.thresholds == (heap.YOUNG_THRESHOLD, before[1], before[2])
    assert gc.get_threshold() == settled.thresholds
    # What existed is out of the collector's view; what comes after is not.
    made_after = {"b": [2]}
    tracked = {id(item) for item in gc.get_objects()}
    assert id(built_to_start[1]) not in tracked
    assert id(made_after) in tracked


def _made_by_the_gateway(item: Any) -> bool:
    """A request, a response or an object of the gateway's own. Not aiohttp's 404 or 405 for a
    path no route takes: its route refers to itself, a cycle of a few objects of aiohttp's."""
    if isinstance(item, web.HTTPException):
        return False
    module = getattr(type(item), "__module__", "") or ""
    return module.startswith("gateway.") or isinstance(item, web.BaseRequest | web.StreamResponse)


async def _requests_of_every_kind(client: Any) -> None:
    # Proxied GET and POST (form and JSON), a multipart upload, and refusals: a bad
    # percent-encoding, an unsupported body, a path outside the API, a method it lacks.
    assert (await client.get(f"{ECHO}?a=1")).status == 200
    assert (await client.post(ECHO, data="a=1&b=2", headers=FORM)).status == 200
    assert (await client.post(ECHO, json={"a": "1"})).status == 200
    form = aiohttp.FormData()
    form.add_field("name", "value")
    form.add_field("fileData", b"x" * 4096, filename="f.bin")
    assert (await client.post(UPLOAD, data=form)).status == 200
    bad = await client.post(ECHO, data=b"<a/>", headers={"Content-Type": "x/y"})
    assert bad.status == 415
    assert (await client.get("/elsewhere")).status == 404
    assert (await client.put(ECHO)).status == 405
    malformed = URL(f"{ECHO}?a=%zz", encoded=True)
    assert (await client.get(malformed)).status == 400


async def _left_in_cycles(step: Callable[[], Awaitable[None]], times: int) -> Counter[str]:
    """What of the gateway's `times` runs of `step` left in reference cycles, by type (the
    first run, which fills caches, not counted)."""
    await step()
    gc.collect()
    gc.disable()
    try:
        for _ in range(times):
            await step()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [item for item in gc.garbage if _made_by_the_gateway(item)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    return Counter(type(item).__qualname__ for item in left)


async def test_requests_leave_no_cycles_behind(make_gateway: GatewayFactory) -> None:
    client = await make_gateway()
    assert await _left_in_cycles(lambda: _requests_of_every_kind(client), 5) == Counter()


@pytest.mark.e2e
async def test_serve_settles_the_heap_once_it_is_ready(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(write_config(tmp_path))
    await gateway.wait_for_log("garbage collector:")
    line = next(line for line in gateway.log_lines if "garbage collector:" in line)
    assert f"thresholds ({heap.YOUNG_THRESHOLD}, " in line
    frozen = int(line.split("garbage collector: ")[1].split()[0])
    assert frozen > 10_000


# With a body: a request's body (aiohttp's StreamReader) refers back to its connection.
REQUEST = (
    b"POST /neuopenapi/test/echo HTTP/1.1\r\nHost: gateway\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\na=1&b=2"
)


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)  # wait-ok: polls the gateway's own count of connections
    raise AssertionError("never came true")


async def _cut_connection(client: Any, platform: PlatformDouble, answered: bool) -> None:
    """A caller resets its connection (as a load generator does when it stops): after its
    answer, or while the platform still holds its request."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    held = len(platform.received)
    writer.write(REQUEST)
    if answered:
        await reader.readuntil(b"\r\n\r\n")
    else:
        await _until(lambda: len(platform.received) > held)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
    server = client.server.runner.server
    await _until(lambda: server.open_connections == 0)


@pytest.mark.parametrize("answered", [True, False], ids=["after-answer", "mid-request"])
async def test_a_cut_connection_leaves_no_cycles_behind(
    make_gateway: GatewayFactory, platform: PlatformDouble, answered: bool
) -> None:
    platform.hang = not answered
    client = await make_gateway()
    left = await _left_in_cycles(lambda: _cut_connection(client, platform, answered), 3)
    assert left == Counter()


async def _oversized_upstream(chunked: bool) -> asyncio.AbstractServer:
    """A platform that answers every call with more than the gateway's max_response_bytes."""
    body = b"x" * 200_000
    if chunked:
        answer = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(
                b"%x\r\n%s\r\n" % (len(body[i : i + 50_000]), body[i : i + 50_000])
                for i in range(0, len(body), 50_000)
            )
            + b"0\r\n\r\n"
        )
    else:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    async def answer_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                if head.startswith(b"GET / "):  # the start-up probe
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer_all, "127.0.0.1", 0)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_oversized_answer_leaves_no_cycles_behind(
    make_gateway: GatewayFactory, chunked: bool
) -> None:
    """An answer over max_response_bytes (502): the refusal raised in the parser's callback
    must not keep the connection, and the body read so far, in a cycle for the collector."""
    upstream = await _oversized_upstream(chunked)
    port = upstream.sockets[0].getsockname()[1]
    client = await make_gateway(
        f"http://127.0.0.1:{port}",
        limits={"max_response_bytes": 100_000},
        breaker={"failures": 1000},
    )

    async def refused() -> None:
        assert (await client.get(f"{ECHO}?a=1")).status == 502

    try:
        left = await _left_in_cycles(refused, 3)
    finally:
        upstream.close()
    assert left == Counter()
