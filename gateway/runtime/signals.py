"""Every signal the process handles, and the one place a handler for it is installed.

              one process               a worker                  the supervisor        sandbox
    SIGHUP    reload the file           logged and ignored: its   reload the file and   ignored
                                        supervisor reloads        hand it to workers
    SIGTERM   drain, then stop          drain, then stop          passed on, once       stop
    SIGINT    stop (ends a drain)       stop (ends a drain)       passed on, once       stop

Until a command installs its handlers, SIGHUP is ignored (a `systemctl reload` right after the
start must not end the process); workers inherit that, and the commands that install none
keep it. Once the process is ending all three are ignored: one sent then must not end it
otherwise.

This module imports nothing but `signal` to run: `python -m gateway` imports it first, and the
time before SIGHUP is ignored should be short.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


def ignore_reloads() -> None:
    """SIGHUP ignored until a command installs its own handler."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def install(
    loop: asyncio.AbstractEventLoop,
    *,
    terminate: Callable[[], None],
    interrupt: Callable[[], None],
    reload: Callable[[], None] | None = None,
) -> None:
    """The process's handlers, run on `loop`: SIGTERM, SIGINT and (unless None, so ignored)
    SIGHUP. All are in place before the caller says it listens: a signal sent at once must
    not meet the default action, which ends the process."""
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGTERM, terminate)
    loop.add_signal_handler(signal.SIGINT, interrupt)


def ignore_all() -> None:
    """SIGHUP, SIGTERM and SIGINT ignored from here on: the process is ending."""
    for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
