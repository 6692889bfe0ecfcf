"""A guarded listener of the gateway's, for the tests of its connections and their feeding: run
on loopback in a thread of its own for a whole module, so hypothesis can open many connections
with a plain blocking socket."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from gateway.http.keys import CONFIG
from gateway.http.server import GuardedRunner
from gateway.runtime.app import create_app
from gateway.runtime.listeners import connection_limits
from tests.conftest import gateway_config
from tests.support import paths

MAX_HEADER_BYTES = 1024
# The whole block (request line and headers) may take 2 * max_header_bytes + 1024.
BLOCK_LIMIT = 2 * MAX_HEADER_BYTES + 1024
HEADER_TIMEOUT_S = 0.6
ECHO = paths.ECHO.encode()
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


async def _accept_anything(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"responseHeader": {"status": 200, "msg": "OK"}, "response": True})


@pytest.fixture(scope="module")
def listener_port() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        upstream = web.Application()
        upstream.router.add_route("*", "/{tail:.*}", _accept_anything)
        upstream_runner = web.AppRunner(upstream)
        await upstream_runner.setup()
        await web.TCPSite(upstream_runner, "127.0.0.1", 0).start()
        config = gateway_config(
            f"http://127.0.0.1:{upstream_runner.addresses[0][1]}",
            limits={"max_header_bytes": MAX_HEADER_BYTES, "header_timeout_s": HEADER_TIMEOUT_S},
        )
        app = create_app(config)
        gateway = GuardedRunner(app, connection_limits(app[CONFIG]))
        await gateway.setup()
        await web.TCPSite(gateway, "127.0.0.1", 0).start()
        state["port"] = gateway.addresses[0][1]
        state["stop"] = asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await gateway.cleanup()
        await upstream_runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(20), "the gateway did not start"
    yield state["port"]
    loop.call_soon_threadsafe(state["stop"].set)
    thread.join(20)
    loop.close()


def exchange(
    port: int,
    pieces: list[bytes],
    gap_s: float = 0.0,
    timeout_s: float = 10,
    sends_may_fail: bool = True,
) -> bytes:
    """Sends each piece in a write of its own (apart by gap_s); returns all the answers up to
    the server's close. A send the server cuts off (a reset) fails the exchange unless
    `sends_may_fail`: a client past a limit may be cut off, its answer still read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in pieces:
                if gap_s:
                    time.sleep(gap_s)  # wait-ok: the client's pacing is what is tested
                conn.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            if not sends_may_fail:
                raise
        answers = b""
        while chunk := conn.recv(65536):
            answers += chunk
        return answers


def form_post(body: bytes) -> bytes:
    return (
        b"POST " + ECHO + b" HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def chunked_post(body: bytes, extension: bytes = b"") -> bytes:
    chunks = b"".join(
        f"{len(body[i : i + 7]):x}".encode() + extension + b"\r\n" + body[i : i + 7] + b"\r\n"
        for i in range(0, len(body), 7)
    )
    return (
        b"POST " + ECHO + b" HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
