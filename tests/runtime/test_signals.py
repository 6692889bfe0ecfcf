"""The process's signal handlers, with real signals sent to this process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gateway.runtime import signals

HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


@pytest.fixture(autouse=True)
def dispositions_kept() -> Iterator[None]:
    """The test run's own handlers come back after each test."""
    kept = {signum: signal.getsignal(signum) for signum in HANDLED}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)


def test_reloads_are_ignored_until_a_handler_is_installed() -> None:
    signals.ignore_reloads()
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGHUP)  # would end the test run otherwise


async def test_each_signal_reaches_its_handler() -> None:
    loop = asyncio.get_running_loop()
    came: dict[str, asyncio.Event] = {name: asyncio.Event() for name in ("term", "int", "hup")}
    signals.install(
        loop,
        terminate=came["term"].set,
        interrupt=came["int"].set,
        reload=came["hup"].set,
    )
    sent: list[str] = []
    try:
        for signum, name in zip(HANDLED, ("hup", "term", "int"), strict=True):
            os.kill(os.getpid(), signum)
            async with asyncio.timeout(5):
                await came[name].wait()
            sent.append(name)
            # Each reached its own handler, and no other.
            assert {other for other, event in came.items() if event.is_set()} == set(sent)
    finally:
        for signum in HANDLED:
            loop.remove_signal_handler(signum)


async def test_without_a_reload_handler_sighup_stays_as_it_was() -> None:
    loop = asyncio.get_running_loop()
    signals.ignore_reloads()

    def noop() -> None:
        pass

    signals.install(loop, terminate=noop, interrupt=noop)
    try:
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def test_an_ending_process_ignores_all_three() -> None:
    signals.ignore_all()
    assert [signal.getsignal(signum) for signum in HANDLED] == [signal.SIG_IGN] * 3
    for signum in HANDLED:
        os.kill(os.getpid(), signum)  # each would end the test run otherwise


def test_the_module_loads_without_asyncio() -> None:
    """`python -m gateway` imports it first: SIGHUP is ignored before anything slow loads."""
    code = "import sys, gateway.runtime.signals; print('asyncio' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
