"""The gateway process's life, served in this process with real signals sent to it: listen,
reload on SIGHUP, drain on SIGTERM, stop at SIGINT; a worker's life beside its supervisor's
pipes. (The same through the real command: tests/e2e/test_operations.py.)"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.config.load import load
from gateway.config.model import Placement
from gateway.config.schema import ListenConfig
from gateway.http.keys import LIVE_CONFIG
from gateway.runtime.app import create_app
from gateway.runtime.listeners import StartError
from gateway.runtime.serve import remove_pid, serve_gateway, serve_until_stopped, write_pid
from gateway.runtime.workers import Ports, SupervisorPipes, WorkerEnvironment, placed
from tests.support.platform_double import SECRET
from tests.support.processes import write_config

HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


@pytest.fixture(autouse=True)
def process_kept() -> Iterator[None]:
    """What serving changes of the process (its signal handlers, the collector's settings)
    comes back after each test."""
    kept = {signum: signal.getsignal(signum) for signum in HANDLED}
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    for signum, handler in kept.items():
        signal.signal(signum, handler)


class Log(logging.Handler):
    """The gateway's log lines as they come, to wait on."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        # (From whichever thread logged.)
        self._loop.call_soon_threadsafe(self._new_line.set)

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """The first line that matches, once it is logged."""
        async with asyncio.timeout(10):
            while True:
                self._new_line.clear()
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                await self._new_line.wait()


@pytest.fixture
async def log() -> AsyncIterator[Log]:
    logger = logging.getLogger("neu_gateway")
    level = logger.level
    handler = Log()
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def config_file(tmp_path: Path, platform_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEU_SECRET_DEMO", SECRET)
    return write_config(
        tmp_path,
        platform_url,
        shutdown="{drain_s: 30, timeout_s: 2}",
        pid_file=str(tmp_path / "run" / "gateway.pid"),
    )


async def get(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def send(signum: signal.Signals) -> None:
    os.kill(os.getpid(), signum)


async def test_sigterm_drains_and_sigint_ends_the_drain(config_file: Path, log: Log) -> None:
    config = load(config_file)
    serving = asyncio.ensure_future(serve_gateway(create_app(config), config, config_file))
    url = (await log.wait_for(r"neu-gateway listening on (\S+)"))[1]
    pid_file = config.pid_file
    assert pid_file is not None
    assert pid_file.read_text() == f"{os.getpid()}\n"
    assert await get(url + "/readyz") == 200
    send(signal.SIGTERM)
    await log.wait_for(r"^draining: /readyz answers 503; still serving for 30 s$")
    assert await get(url + "/readyz") == 503, "unready, and still serving"
    send(signal.SIGTERM)
    await log.wait_for(r"^SIGTERM while stopping: ignored")
    assert not serving.done()
    send(signal.SIGINT)
    async with asyncio.timeout(10):
        await serving
    assert "neu-gateway stopping: finishing requests in flight" in log.lines
    assert not pid_file.exists()
    # Ending, a signal must not end the process otherwise.
    assert [signal.getsignal(signum) for signum in HANDLED] == [signal.SIG_IGN] * 3


async def test_sighup_reloads_the_file_and_sigint_stops_without_a_drain(
    config_file: Path, log: Log, platform_url: str
) -> None:
    config = load(config_file)
    app = create_app(config)
    serving = asyncio.ensure_future(serve_gateway(app, config, config_file))
    await log.wait_for(r"neu-gateway listening on")
    edit(config_file, platform_url, "https://next.example")
    send(signal.SIGHUP)
    await log.wait_for(rf"^config reloaded from {re.escape(str(config_file))}$")
    assert app[LIVE_CONFIG].current.apps["demo"].upstream == "https://next.example"
    send(signal.SIGINT)
    async with asyncio.timeout(10):
        await serving
    assert not any(line.startswith("draining") for line in log.lines)


async def test_a_worker_says_it_listens_and_stops_once_its_supervisor_is_gone(
    config_file: Path, log: Log
) -> None:
    ready_read, ready_write = os.pipe()
    handover_read, handover_write = os.pipe()
    worker = WorkerEnvironment(
        Placement(index=4, sandbox_url=None),
        Ports(listen=0, callbacks=None, admin=None),
        SupervisorPipes(ready_fd=ready_write, handover_fd=handover_read),
    )
    config = placed(load(config_file), worker)
    assert config.pid_file is None
    serving = asyncio.ensure_future(serve_gateway(create_app(config), config, config_file, worker))
    try:
        said = await asyncio.to_thread(os.read, ready_read, 1)
    finally:
        os.close(ready_read)
    assert said == b"1"
    assert "worker 4 listening" in log.lines
    send(signal.SIGHUP)
    await log.wait_for(r"^SIGHUP ignored: a worker takes its config from its supervisor")
    os.close(handover_write)
    await log.wait_for(r"^the supervisor is gone: stopping as on SIGTERM$")
    await log.wait_for(r"^draining")
    send(signal.SIGINT)
    async with asyncio.timeout(10):
        await serving


async def test_a_port_in_use_is_named(config_file: Path, platform_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        edit(config_file, "port: 0}", f"port: {port}}}")
        config = load(config_file)
        with pytest.raises(StartError, match=rf"^cannot start: listen: .*127\.0\.0\.1:{port}"):
            await serve_gateway(create_app(config), config, config_file)


async def test_a_pid_file_that_cannot_be_written_stops_the_start(
    config_file: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    edit(config_file, str(tmp_path / "run"), str(blocker))
    config = load(config_file)
    with pytest.raises(StartError, match=rf"^cannot write pid_file {re.escape(str(blocker))}/"):
        await serve_gateway(create_app(config), config, config_file)


def test_the_pid_file_is_written_with_its_directory(tmp_path: Path) -> None:
    pid_file = tmp_path / "deep" / "er" / "gateway.pid"
    write_pid(pid_file)
    assert pid_file.read_text() == f"{os.getpid()}\n"


async def test_a_listener_of_its_own_serves_until_sigterm(log: Log) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    serving = asyncio.ensure_future(
        serve_until_stopped(web.AppRunner(app), ListenConfig(port=0), "thing", "--port")
    )
    url = (await log.wait_for(r"^thing listening on (\S+)$"))[1]
    assert await get(url + "/") == 200
    send(signal.SIGTERM)
    async with asyncio.timeout(10):
        await serving
    assert log.lines[-1] == "thing stopping: finishing requests in flight"


def test_the_pid_file_is_removed_only_while_it_names_this_process(tmp_path: Path) -> None:
    ours = tmp_path / "ours.pid"
    write_pid(ours)
    remove_pid(ours)
    assert not ours.exists()
    # A second gateway on the same config that could not start leaves the first one's file.
    theirs = tmp_path / "theirs.pid"
    theirs.write_text(f"{os.getpid() + 1}\n")
    remove_pid(theirs)
    assert theirs.read_text() == f"{os.getpid() + 1}\n"
    garbled = tmp_path / "garbled.pid"
    garbled.write_text("not a pid\n")
    remove_pid(garbled)
    assert garbled.exists()
    remove_pid(tmp_path / "missing.pid")
