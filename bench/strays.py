"""How often a caller gets an answer that is not its own when the platform misbehaves.

A raw asyncio upstream on 127.0.0.1 answers each request with the id it asked for and, for a
share of the requests (`--every`), sends more than its answer: a second answer in the same
write (`same`), a second answer `--delay-ms` later (`later`), a 204 or 304 with a body
(`204`, `304`), or a body longer than its Content-Length (`longer`); the extra bytes are
always a whole answer of their own, as a smuggled one would be. `--callers` callers call
through the lean client's pool at once, each calling again as soon as it has its answer (or
after up to `--think-ms`), and every answer is checked against the id asked for.
`--client aiohttp` calls through aiohttp's client with the gateway's connector instead (calls
through a proxy, uploads); `--client aiohttp-plain` with aiohttp's own, for comparison.

    .venv/bin/python bench/strays.py                        # every shape, the defaults
    .venv/bin/python bench/strays.py --shape later --delay-ms 20 --every 0.01 --callers 8

Counted: own answers, errors (502 upstream_bad_response through the gateway), answers that
were the extra bytes, and answers that were another caller's own. `--primed` has the pool
see one stray before the callers start, as it has once the platform has misbehaved.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from gateway.core.errors import GatewayError
from gateway.upstream.aiohttp_client import WaryConnector
from gateway.upstream.lean.pool import Origins, Pool, Slots
from gateway.upstream.lean.wire import request_head
from gateway.upstream.tls import default_context

SHAPES = ("same", "later", "204", "304", "longer")
_ID = re.compile(rb"[?&]id=(\d+)")
_STRAY = 1 << 40  # ids of the extra answers: not any caller's


def answer(request_id: int) -> bytes:
    body = b'{"id":%d}' % request_id
    return b"HTTP/1.1 200 OK\r\nX-Id: %d\r\nContent-Length: %d\r\n\r\n%s" % (
        request_id,
        len(body),
        body,
    )


def with_extra(shape: str, request_id: int) -> bytes:
    """The answer to `request_id` with a whole answer behind it, in one write."""
    extra = answer(_STRAY + request_id)
    if shape in ("204", "304"):
        reason = b"No Content" if shape == "204" else b"Not Modified"
        head = b"HTTP/1.1 %s %s\r\nX-Id: %d\r\nContent-Length: %d\r\n\r\n"
        return head % (shape.encode(), reason, request_id, len(extra)) + extra
    if shape == "longer":
        body = b'{"id":%d}' % request_id
        head = b"HTTP/1.1 200 OK\r\nX-Id: %d\r\nContent-Length: %d\r\n\r\n"
        return head % (request_id, len(body)) + body + extra
    return answer(request_id) + extra


@dataclass
class Hostile:
    shapes: tuple[str, ...]
    every: float
    delay_s: float
    connections: int = 0
    # The first request gets a second answer behind its own, whatever `every` says.
    prime: bool = False
    _rng: random.Random = field(default_factory=random.Random)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                found = _ID.search(head)
                request_id = int(found.group(1)) if found else 0
                if self.prime or self._rng.random() < self.every:
                    # The priming extra comes in the same write: seen at once.
                    shape = "same" if self.prime else self._rng.choice(self.shapes)
                    self.prime = False
                    if shape == "later":
                        writer.write(answer(request_id))
                        asyncio.get_running_loop().call_later(
                            self.delay_s, _write, writer, answer(_STRAY + request_id)
                        )
                    else:
                        writer.write(with_extra(shape, request_id))
                else:
                    writer.write(answer(request_id))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if not writer.is_closing():
        writer.write(data)


@dataclass
class Tally:
    own: int = 0
    errors: int = 0
    extra: int = 0
    others: int = 0

    @property
    def calls(self) -> int:
        return self.own + self.errors + self.extra + self.others


async def call(pool: Pool, request_id: int) -> int | None:
    """The id the answer carries; None for an error."""
    url = URL(f"http://{pool.host_header}/x?id={request_id}", encoded=True)
    head = request_head("GET", url, pool.host_header, CIMultiDict(), None)
    try:
        got = await pool.request(head, None, 1 << 20, 5, 2)
    except (GatewayError, OSError, TimeoutError):
        return None
    return int(got.headers["X-Id"])


async def call_aiohttp(session: aiohttp.ClientSession, url: str, request_id: int) -> int | None:
    try:
        async with session.get(f"{url}/x?id={request_id}") as response:
            await response.read()
            return int(response.headers["X-Id"])
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


async def run(
    hostile: Hostile, callers: int, calls: int, think_s: float, cap: int, client: str
) -> tuple[Tally, float]:
    server = await asyncio.start_server(hostile.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    pool = Origins(default_context(), None, Slots(cap), 30).pool(URL(url))
    connector_type = WaryConnector if client == "aiohttp" else aiohttp.TCPConnector
    session = aiohttp.ClientSession(connector=connector_type(limit=cap, keepalive_timeout=30))
    one: Callable[[int], Awaitable[int | None]]
    if client == "lean":
        one = functools.partial(call, pool)
    else:
        one = functools.partial(call_aiohttp, session, url)
    tally = Tally()
    ids = iter(range(1, calls + 1))
    if hostile.prime:
        await one(next(ids))
    rng = random.Random()  # noqa: S311 - pacing, not security

    async def caller() -> None:
        for request_id in ids:
            got = await one(request_id)
            if got is None:
                tally.errors += 1
            elif got == request_id:
                tally.own += 1
            elif got >= _STRAY:
                tally.extra += 1
            else:
                tally.others += 1
            if think_s:
                await asyncio.sleep(rng.uniform(0, think_s))

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - started
    pool.close()
    await session.close()
    server.close()
    await server.wait_closed()
    return tally, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=(*SHAPES, "all", "each"), default="each")
    parser.add_argument("--every", type=float, default=0.1, help="share of answers with more")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="for `later`")
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--think-ms", type=float, default=0.0)
    parser.add_argument("--cap", type=int, default=0, help="pool.max_connections (0: none)")
    parser.add_argument("--primed", action="store_true")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--client", choices=("lean", "aiohttp", "aiohttp-plain"), default="lean")
    args = parser.parse_args()
    runs: list[tuple[str, ...]]
    if args.shape == "each":
        runs = [(shape,) for shape in SHAPES]
    elif args.shape == "all":
        runs = [SHAPES]
    else:
        runs = [(args.shape,)]
    print(
        f"{args.callers} callers, {args.calls} calls, {args.every:.0%} with more, "
        f"later {args.delay_ms:g} ms, think {args.think_ms:g} ms, cap {args.cap}, "
        f"{'primed, ' if args.primed else ''}{args.loop}, {args.client}"
    )
    print(
        "| shape | calls | own | errors | the extra answer | another caller's | connections "
        "| calls/s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for chosen in runs:
        hostile = Hostile(chosen, args.every, args.delay_ms / 1000, prime=args.primed)
        coroutine = run(
            hostile, args.callers, args.calls, args.think_ms / 1000, args.cap, args.client
        )
        if args.loop == "uvloop":
            import uvloop

            tally, elapsed = uvloop.run(coroutine)
        else:
            tally, elapsed = asyncio.run(coroutine)
        print(
            f"| {'+'.join(chosen)} | {tally.calls} | {tally.own} | {tally.errors} | "
            f"{tally.extra} | {tally.others} | {hostile.connections} | "
            f"{tally.calls / elapsed:.0f} |"
        )


if __name__ == "__main__":
    main()
