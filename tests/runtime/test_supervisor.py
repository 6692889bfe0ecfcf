"""The supervisor: the ports it reserves, and its loop run in this process with a stand-in for
a worker (a small Python process that reads the handover as a worker does), with real
signals. (Real workers: tests/e2e/test_workers.py.)"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway import __version__
from gateway.config.load import load
from gateway.runtime.listeners import StartError
from gateway.runtime.supervisor import Supervisor, reserve_port
from tests.support.platform_double import SECRET
from tests.support.processes import write_config

HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

# A worker as far as its supervisor can tell: it takes the config handed over (with the
# secret it is told to expect), says it listens, and ends at SIGTERM.
STAND_IN = textwrap.dedent(
    """
    import json, os, signal, sys
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    from gateway.runtime import handover
    told = json.loads(os.environ["NEU_GATEWAY_WORKER"])
    config = handover.receive_start(told["handover_fd"])
    assert config is not None and config.apps["demo"].secret.reveal() == sys.argv[1]
    os.write(told["ready_fd"], b"1")
    signal.sigwait([signal.SIGTERM])
    """
)


@pytest.fixture(autouse=True)
def signals_kept() -> Iterator[None]:
    kept = {signum: signal.getsignal(signum) for signum in HANDLED}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port: int = taken.getsockname()[1]
        yield port


def test_a_port_is_reserved_for_workers_to_share() -> None:
    first = reserve_port("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with reserve_port("127.0.0.1", port) as second:
            assert second.getsockname()[1] == port
    finally:
        first.close()


def test_a_port_another_process_listens_on_cannot_be_reserved(taken_port: int) -> None:
    with pytest.raises(StartError) as failed:
        reserve_port("127.0.0.1", taken_port)
    assert str(failed.value) == f"cannot listen on 127.0.0.1:{taken_port} (Address already in use)"


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEU_SECRET_DEMO", SECRET)
    return write_config(
        tmp_path, "https://platform.example", pid_file=str(tmp_path / "gateway.pid")
    )


@pytest.mark.e2e
async def test_a_worker_that_ends_before_it_listens_fails_the_start(config_file: Path) -> None:
    config = load(config_file)
    argv = [sys.executable, "-c", "raise SystemExit(3)"]
    with pytest.raises(StartError) as failed:
        await Supervisor(config, config_file, argv).run()
    assert str(failed.value) == "worker 0 exited with status 3 before it listened"
    assert config.pid_file is not None
    assert not config.pid_file.exists()


@pytest.mark.e2e
async def test_the_supervisor_listens_once_its_workers_do_and_passes_sigterm_on(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = replace(load(config_file), workers=2)
    argv = [sys.executable, "-c", STAND_IN, SECRET]
    listening = asyncio.Event()

    class Listening(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "listening on" in record.getMessage():
                listening.set()

    handler = Listening()
    logger = logging.getLogger("neu_gateway.supervisor")
    logger.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, "neu_gateway.supervisor"):
            running = asyncio.ensure_future(Supervisor(config, config_file, argv).run())
            async with asyncio.timeout(30):
                await listening.wait()
            assert config.pid_file is not None
            assert config.pid_file.read_text() == f"{os.getpid()}\n"
            os.kill(os.getpid(), signal.SIGTERM)
            async with asyncio.timeout(30):
                await running
    finally:
        logger.removeHandler(handler)
    [said] = [r.getMessage() for r in caplog.records if "listening on" in r.getMessage()]
    assert said.startswith("neu-gateway listening on http://127.0.0.1:")
    assert said.endswith(f" (2 workers, version {__version__})")
    assert not config.pid_file.exists()
