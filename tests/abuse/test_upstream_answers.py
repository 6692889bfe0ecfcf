"""A hostile platform: answers that would make a naive client hold or inflate without bound.

The gateway runs as a process against a scripted upstream on loopback; several callers at
once must each get a 502 or 504 envelope while the peak memory stays within what
limits.max_response_bytes allows each call, and /healthz keeps answering.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.abuse.conftest import Liveness, Target, exchange, request_bytes
from tests.egress.test_http1 import read_request, upstream
from tests.processes import StartGateway, write_config

ECHO = "/neuopenapi/test/echo"
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
        # (timeouts.total_s is 5 s, as write_config sets it.)
        config = write_config(
            tmp_path,
            upstream=served.url,
            retries="{attempts: 1}",
            limits=f"{{max_response_bytes: {MAX_RESPONSE_BYTES}}}",
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
