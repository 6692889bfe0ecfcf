"""Access lines as a log shipper reads them: whole lines, whatever shares the stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.platform_double import SECRET
from tests.support.processes import write_config
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent.parent


def _pipelined_load(port: int, connections: int, per_connection: int) -> int:
    """Requests the gateway answers at once (a 404 each), pipelined on a few connections."""
    answered = 0
    batch = b"".join(
        b"GET /neuopenapi/no/such/%d HTTP/1.1\r\nHost: gw\r\nX-Neu-App: nope\r\n\r\n" % n
        for n in range(per_connection)
    )
    for _ in range(connections):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(batch)
            sock.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
        answered += got.count(b"HTTP/1.1 ")
    return answered


def _run_two_workers_under_load(config: Path) -> bytes:
    """`serve --workers 2` with JSON logs into a pipe whose reader is a little slow (as a log
    shipper under load is), many requests at once; everything the processes wrote."""
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--log-format", "json", "serve", "-c", str(config)],
        cwd=ROOT,
        stderr=write_fd,
        env={**os.environ, "NEU_SECRET_DEMO": SECRET},
    )
    os.close(write_fd)
    written = bytearray()
    ready = threading.Event()
    slow = threading.Event()

    def read() -> None:
        while True:
            if slow.is_set():
                time.sleep(0.002)  # wait-ok: the pace of a lagging reader
            chunk = os.read(read_fd, 2048 if slow.is_set() else 65536)
            if not chunk:
                break
            written.extend(chunk)
            if b"(2 workers, " in written:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(30), written.decode(errors="replace")
        port = int(
            next(line for line in written.decode().splitlines() if "(2 workers, " in line)
            .split("127.0.0.1:")[1]
            .split(" ")[0]
        )
        slow.set()
        loaders = [threading.Thread(target=_pipelined_load, args=(port, 20, 50)) for _ in range(16)]
        for loader in loaders:
            loader.start()
        for loader in loaders:
            loader.join()
        slow.clear()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        reader.join(10)
        os.close(read_fd)
    return bytes(written)


async def test_access_lines_of_two_workers_are_never_torn_into_each_other(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """`serve --workers 2`: both workers write to the one stderr they inherit from the
    supervisor, whose reader lags. A pipe takes a write of up to PIPE_BUF (4096) bytes whole
    and may take a larger one in parts, with the other worker's lines in between: a turn's
    access lines must leave in writes of whole lines within that size."""
    config = write_config(
        tmp_path,
        cache=f"{{backend: redis, url: '{redis_server.url}'}}",
        shutdown="{drain_s: 0}",
        workers="2",
    )
    written = await asyncio.to_thread(_run_two_workers_under_load, config)
    torn = []
    access = 0
    for line in written.split(b"\n"):
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            torn.append(line)
            continue
        access += record.get("logger") == "neu_gateway.access"
    assert access > 1000, "the load reached the workers"
    assert torn == [], f"{len(torn)} torn lines, e.g. {torn[0][:400]!r}"
