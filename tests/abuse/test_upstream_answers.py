"""A hostile platform: answers that would make a naive client hold or inflate without bound.

The gateway runs as a process against a scripted upstream on loopback; several callers at
once must each get a 502 or 504 envelope while the peak memory stays within what
limits.max_response_bytes allows each call, and /healthz keeps answering.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.abuse.conftest import Liveness, Target, exchange, request_bytes
from tests.support.paths import ECHO
from tests.support.processes import StartGateway, write_config
from tests.support.scripted_server import read_request, upstream

# Every gateway here is started and watched on the module's event loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

CALLERS = 8
MAX_RESPONSE_BYTES = 1 << 20
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answering(head: bytes, then: Callable[[], bytes] | None = None) -> Script:
    """Each request gets `head`, then `then()` over and over until the caller hangs up."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(head)
            await writer.drain()
            if then is not None:
                while True:
                    writer.write(then())
                    await writer.drain()

    return script


BOMB = gzip.compress(b"{" * 100_000_000)  # 100 MB of JSON text in about 100 KB

HOSTILE = [
    pytest.param(
        answering(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
            % (len(BOMB), BOMB)
        ),
        502,
        id="a gzip bomb",
    ),
    pytest.param(
        answering(b"HTTP/1.1 200 OK\r\nX-Long: ", lambda: b"a" * 65536),
        502,
        id="a header line that never ends",
    ),
    pytest.param(
        answering(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            lambda: b"10000\r\n" + b"x" * 0x10000 + b"\r\n",
        ),
        502,
        id="an endless chunked answer",
    ),
    pytest.param(
        answering(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n{"),
        502,
        id="a terabyte announced",
    ),
    pytest.param(
        answering(b"HTTP/1.1 200 OK\r\n", lambda: b"X-A: b\r\n"),
        502,
        id="headers without end",
    ),
    pytest.param(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"), 504, id="stalls"),
]


@pytest.mark.parametrize(("script", "status"), HOSTILE)
async def test_a_hostile_answer_is_refused_with_memory_bounded_and_health_answering(
    start_gateway: StartGateway, tmp_path: Path, script: Script, status: int
) -> None:
    async with upstream(script) as served:
        # What is refused for what it sends is refused within write_config's total_s (5 s);
        # a stall is what total_s ends, and a second of it says as much as five.
        total_s = 1 if status == 504 else 5
        config = write_config(
            tmp_path,
            upstream=served.url,
            retries="{attempts: 1}",
            limits=f"{{max_response_bytes: {MAX_RESPONSE_BYTES}}}",
            timeouts=f"{{connect_s: 2, total_s: {total_s}}}",
        )
        process = await start_gateway(config)
        target = Target(process, process.url, process.url, process.url)
        before_kb = target.memory_kb()
        async with Liveness([f"{target.url}/healthz"]) as probe:
            answers = await asyncio.gather(
                *(exchange(target.port, request_bytes("GET", ECHO)) for _ in range(CALLERS))
            )
        probe.assert_answered()
        for answer in answers:
            assert answer is not None
            assert answer.status == status, answer
            assert answer.error in ("upstream_bad_response", "upstream_timeout"), answer
        # Each call may hold up to max_response_bytes of answer, never more.
        grown_mb = (target.memory_kb() - before_kb) / 1024
        bound_mb = CALLERS * 2 * MAX_RESPONSE_BYTES / (1 << 20) + 8
        assert grown_mb <= bound_mb, f"peak memory grew by {grown_mb:.1f} MB"


# --- more than one answer to a request -------------------------------------------------------

STRAY_ID = 1 << 40
_ID = re.compile(rb"[?&]id=(\d+)")


def echo(request_id: int, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    """The answer to `request_id`, saying which it is; a 204 or 304 says it with no body
    (`extra` then goes where the body would be, as if it were one)."""
    body = b"" if status != b"200 OK" else b'{"id":%d}' % request_id
    length = len(body) + len(extra) if status != b"200 OK" else len(body)
    head = b"HTTP/1.1 %s\r\nX-Id: %d\r\nContent-Length: %d\r\n\r\n" % (status, request_id, length)
    return head + body + extra


def hostile_upstream(rng: random.Random) -> Script:
    """One answer in ten (and every answer to id 0, or to no id: the gateway's probe) has a
    whole other answer behind it: in the same write (a second answer, a 204 or 304 with a
    body, a body past its length) or 5 ms later."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            found = _ID.search(await read_request(reader))
            asked = int(found.group(1)) if found else 0
            extra = echo(STRAY_ID + asked)
            if asked != 0 and rng.random() >= 0.1:
                writer.write(echo(asked))
            else:
                # To id 0, in the same write: the gateway sees it at once.
                shape = rng.randrange(5) if asked != 0 else 3
                if shape == 0:
                    writer.write(echo(asked))
                    loop.call_later(0.005, writer.write, extra)
                elif shape in (1, 2):
                    writer.write(echo(asked, b"204 No Content" if shape == 1 else b"304 X", extra))
                else:
                    # A second answer in the same write, or (as the body's length does not
                    # count it) a body past its length.
                    writer.write(echo(asked) + extra)
            await writer.drain()

    return script


async def test_concurrent_callers_each_get_their_own_answer_or_an_error_never_anothers(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """Through a running gateway (its event loop and pool as in production), callers at once
    against an upstream that sends more than its answer now and then: once the gateway has
    seen it do so, each caller gets the answer to its own request, or a 502, never the extra
    one or another caller's. (Before that, a stray that comes later than its answer cannot be
    told from the next one's: SECURITY.md has the measures.)"""
    async with upstream(hostile_upstream(random.Random(22))) as served:
        config = write_config(
            tmp_path,
            upstream=served.url,
            retries="{attempts: 1}",
            breaker="{failures: 10000}",
        )
        process = await start_gateway(config)
        port = Target(process, process.url, process.url, process.url).port
        await each_caller_gets_its_own_answer_or_an_error(port)


async def each_caller_gets_its_own_answer_or_an_error(port: int) -> None:
    """30 callers, 1,200 calls, each with its own id: its answer echoes that id, or it is a
    502; most are answered. The upstream shows what it does before the callers come (the
    probe at start may not have finished yet)."""
    first = await exchange(port, request_bytes("GET", f"{ECHO}?id=0"))
    assert first is not None
    assert first.status == 502 or first.headers["x-id"] == "0", first
    ids = iter(range(1, 1201))
    outcomes: dict[str, int] = {"own": 0, "error": 0}

    async def caller() -> None:
        for asked in ids:
            answer = await exchange(port, request_bytes("GET", f"{ECHO}?id={asked}"))
            assert answer is not None
            if answer.status >= 500:
                assert answer.error == "upstream_bad_response", answer
                outcomes["error"] += 1
                continue
            assert int(answer.headers["x-id"]) == asked, f"call {asked} got {answer}"
            outcomes["own"] += 1

    await asyncio.gather(*(caller() for _ in range(30)))
    assert outcomes["own"] > 900, outcomes


async def test_through_a_proxy_concurrent_callers_each_get_their_own_answer_or_an_error(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """The same through aiohttp's client, which carries calls through a forward proxy: here the
    hostile upstream is the proxy (it answers the absolute-form requests itself), so its extra
    answers reach the connection as a platform's would through a CONNECT tunnel. A connection
    that received anything after its answer, in the same read or while it rested in the pool,
    is never reused, and once the gateway has seen an extra, connections rest before reuse:
    each caller gets its own answer or a 502."""
    async with upstream(hostile_upstream(random.Random(22))) as served:
        config = write_config(
            tmp_path,
            upstream="http://platform.invalid",
            retries="{attempts: 1}",
            breaker="{failures: 10000}",
        )
        config.write_text(
            config.read_text().replace(
                "    upstream: http://platform.invalid\n",
                f"    upstream: http://platform.invalid\n    proxy: {served.url}\n",
            )
        )
        process = await start_gateway(config)
        port = Target(process, process.url, process.url, process.url).port
        await each_caller_gets_its_own_answer_or_an_error(port)
