"""The commands that act on a running gateway's state: reload (its config) and callbacks
(list or replay the deliveries in its outbox)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from gateway.callbacks.outbox import DEAD, PENDING, Outbox, OutboxError
from gateway.cli.config_file import EXIT_CONFIG, EXIT_INVALID, EXIT_OK, load_or_report
from gateway.config.live import kept_from_the_start
from gateway.core.clock import SystemClock
from gateway.runtime.resources import open_outbox

T = TypeVar("T")


def reload(args: argparse.Namespace) -> int:
    """Validates the config, then sends SIGHUP to the running gateway (pid_file or --pid).

    It checks the file with this shell's environment, but the gateway reads it with its own,
    the one it was started with: so each secret or token from an environment variable is
    named as one the reload keeps, whatever this shell has set."""
    config = load_or_report(args.config)
    if config is None:
        print("neu-gateway: not reloaded; the running gateway keeps its config", file=sys.stderr)
        return EXIT_CONFIG
    pid: int | None = args.pid
    if pid is None:
        if config.pid_file is None:
            print(
                "neu-gateway: no pid_file in the config: give the gateway's process id "
                "with --pid, or set pid_file (serve writes it)",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        try:
            pid = int(config.pid_file.read_text().strip())
        except (OSError, ValueError) as exc:
            print(
                f"neu-gateway: cannot read a process id from pid_file {config.pid_file} "
                f"({getattr(exc, 'strerror', None) or 'not a number'}); is the gateway running?",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    if not _is_gateway(pid):
        print(
            f"neu-gateway: process {pid} is not a running neu-gateway (a stale pid_file?); "
            "nothing sent",
            file=sys.stderr,
        )
        return EXIT_INVALID
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"neu-gateway: cannot signal process {pid} ({exc.strerror})", file=sys.stderr)
        return EXIT_INVALID
    for line in kept_from_the_start(config):
        print(f"neu-gateway: warning: {line}", file=sys.stderr)
    print(f"sent SIGHUP to {pid}: it reloads {args.config} (its log says whether it took it)")
    return EXIT_OK


def _is_gateway(pid: int) -> bool:
    """Whether the process runs this program: a SIGHUP would end most others."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        # No /proc (not Linux): the pid_file is all there is to go by.
        return Path("/proc").is_dir() is False and _alive(pid)
    return any(part.endswith((b"neu-gateway", b"gateway")) for part in command)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def callbacks_list(args: argparse.Namespace) -> int:
    deliveries = _with_outbox(args, lambda outbox: outbox.listing((PENDING, DEAD)))
    if deliveries is None:
        return EXIT_CONFIG
    print(f"{'id':>6}  {'state':8} {'app':12} {'tradeNo:status':44} {'attempts':>8}  last error")
    for d in deliveries:
        key = d.idempotency_key
        print(f"{d.id:>6}  {d.state:8} {d.app:12} {key:44} {d.attempts:>8}  {d.last_error or '-'}")
    print(f"{len(deliveries)} pending or dead")
    return EXIT_OK


def callbacks_replay(args: argparse.Namespace) -> int:
    now = SystemClock().now_ms() / 1000
    found = _with_outbox(args, lambda outbox: outbox.replay(args.id, now))
    if found is None:
        return EXIT_CONFIG
    if not found:
        print(f"neu-gateway: no delivery {args.id} in the outbox", file=sys.stderr)
        return EXIT_INVALID
    print(f"delivery {args.id} is pending again; the running gateway sends it shortly")
    return EXIT_OK


def _with_outbox(args: argparse.Namespace, operation: Callable[[Outbox], Awaitable[T]]) -> T | None:
    """The operation's result on the config's outbox, or None once the problem is reported."""
    config = load_or_report(args.config)
    if config is None:
        return None
    if config.callbacks.listen is None:
        # Opening the store would create an empty outbox where none was ever used.
        print(
            f"neu-gateway: callbacks are off in {args.config} (no callbacks.listen), so there is "
            "no outbox to read",
            file=sys.stderr,
        )
        return None

    async def run() -> T:
        outbox = open_outbox(config)
        try:
            return await operation(outbox)
        finally:
            await outbox.close()

    try:
        return asyncio.run(run())
    except OutboxError as exc:
        print(
            f"neu-gateway: cannot read the outbox {config.callbacks.store}: {exc}", file=sys.stderr
        )
        return None
