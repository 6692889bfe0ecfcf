"""The gateway process's life: listen, reload on SIGHUP, drain on SIGTERM, stop.

SIGHUP re-reads the config file (and every secret and token it names) and swaps it in whole;
an invalid one is refused with one log line and the running one stays. A worker of
`--workers` takes its reloads from its supervisor instead (runtime/handover.py). SIGTERM marks
the gateway unready (/readyz 503) at once, keeps serving for shutdown.drain_s so load
balancers can stop sending, then closes the listeners and gives requests in flight up to
shutdown.timeout_s; more SIGTERMs change nothing. SIGINT (Ctrl-C) skips the drain, or cuts
one short.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway import logs
from gateway.callbacks.outbox import OutboxError
from gateway.config.errors import ConfigError
from gateway.config.load import load
from gateway.config.model import Config
from gateway.config.schema import ListenConfig
from gateway.http.keys import CONFIG, LIVE_CONFIG, METRICS, READINESS
from gateway.http.server import GuardedRunner
from gateway.runtime import handover, heap
from gateway.runtime.app import (
    CannotStart,
    apply_config,
    connection_limits,
    listen_failure,
    listener_site,
)

log = logs.logger("neu_gateway")
# What stopping may take beyond shutdown.timeout_s: closing the stores and the sessions.
STOP_SLACK_S = 1.0


class StartError(Exception):
    """The gateway could not start; the message names the config key to look at."""


async def start_listening(
    runner: web.AppRunner, listen: ListenConfig, key: str, shared: bool = False
) -> None:
    """Starts the runner's app and its listener, as `listen` (the config's `key`) says;
    `shared`: a port the workers share."""
    try:
        # Starts what the app owns: the sandbox and callbacks listeners, the outbox.
        await runner.setup()
    except (OSError, OutboxError, CannotStart) as exc:
        await runner.cleanup()
        raise StartError(f"cannot start: {exc}") from None
    try:
        await listener_site(runner, listen, shared).start()
    except OSError as exc:
        await runner.cleanup()
        failure = listen_failure(key, listen.host, listen.port, exc)
        raise StartError(f"cannot start: {failure}") from None


async def reload_config(
    app: web.Application, path: Path, as_run: Callable[[Config], Config] = lambda new: new
) -> bool:
    """SIGHUP: the config at `path` in force, or the running one kept; True if swapped.
    `as_run` makes of the file's config what this process runs (a worker's ports, the
    command line's --workers), as it did at the start, so only real changes are named."""
    try:
        loaded = await asyncio.to_thread(load, path)
    except ConfigError as exc:
        return _refused(app, path, exc.problems)
    except Exception as exc:
        return _failed(app, path, exc)
    return take_config(app, path, loaded, as_run)


def take_config(
    app: web.Application, path: Path, new: Config, as_run: Callable[[Config], Config]
) -> bool:
    """Puts a config read from `path` in force (see reload_config), or keeps the running one."""
    metrics = app[METRICS]
    try:
        new = as_run(new)
        # Before anything could log them.
        logs.REDACTION.add_secrets(new.credentials())
        pinned = apply_config(app, new)
    except ConfigError as exc:
        return _refused(app, path, exc.problems)
    except Exception as exc:
        return _failed(app, path, exc)
    metrics.config_reloads.labels("ok").inc()
    if pinned:
        log.warning(
            "config reloaded from %s; changed but kept until a restart: %s",
            path,
            ", ".join(pinned),
        )
    else:
        log.info("config reloaded from %s", path)
    return True


def _refused(app: web.Application, path: Path, problems: list[str]) -> bool:
    app[METRICS].config_reloads.labels("failed").inc()
    log.error("config reload refused, the running config stays: %s: %s", path, "; ".join(problems))
    return False


def _failed(app: web.Application, path: Path, exc: Exception) -> bool:
    app[METRICS].config_reloads.labels("failed").inc()
    # Named by its type only: the exception may quote the file, secrets and all.
    log.error("config reload failed, the running config stays: %s: %s", path, type(exc).__name__)
    return False


@dataclass(frozen=True)
class SupervisorPipes:
    """Worker `index`'s pipes to its supervisor: it says on `ready_fd` that it listens, and
    takes the config in force from `handover_fd` (gateway/runtime/handover.py)."""

    index: int
    ready_fd: int
    handover_fd: int


async def serve_gateway(
    app: web.Application,
    config: Config,
    path: Path,
    supervisor: SupervisorPipes | None = None,
    as_run: Callable[[Config], Config] = lambda new: new,
) -> None:
    """Serves until stopped. A reload reads `path` and runs `as_run` of it; in a worker
    (`supervisor` set), which shares its ports, the supervisor reads it and hands it over."""
    # Half: aiohttp waits this long for requests, cancels them, then may wait as long again.
    runner = GuardedRunner(
        app,
        connection_limits(config),
        on_refused=app[METRICS].count_refused,
        on_evicted=app[METRICS].count_evicted,
        shutdown_timeout=config.shutdown.timeout_s / 2,
    )
    await start_listening(runner, config.listen, "listen", shared=supervisor is not None)
    loop = asyncio.get_running_loop()
    # Every handler in place before anyone is told the gateway listens: a signal sent at
    # once must not meet the default action, which ends the process.
    stop = _Stop()
    if supervisor is None:
        follower = None
        loop.add_signal_handler(signal.SIGHUP, _reloads_in_turn(app, path, as_run))
    else:
        loop.add_signal_handler(signal.SIGHUP, _sighup_to_a_worker)
        follower = loop.create_task(_follow(app, path, supervisor.handover_fd, as_run, stop))
    pid_file = config.pid_file
    if pid_file is not None:
        # After the handlers (`reload` signals this pid), before the "listening" line.
        try:
            write_pid(pid_file)
        except StartError:
            await runner.cleanup()
            raise
    settled = heap.settle()
    log.debug(
        "garbage collector: %d startup objects frozen, thresholds %s",
        settled.frozen,
        settled.thresholds,
    )
    if supervisor is not None:
        log.info("worker %d listening", supervisor.index)
        _report_ready(supervisor.ready_fd)
    else:
        for address, bound_port, *_ in runner.addresses:
            log.info("neu-gateway listening on http://%s:%d", address, bound_port)
    try:
        if await stop.requested:
            await _drain(app, stop)
        log.info("neu-gateway stopping: finishing requests in flight")
        timeout_s = app[CONFIG].shutdown.timeout_s
        try:
            # aiohttp waits for each listener in turn, and twice over (before and after it
            # cancels): one deadline for the whole stop keeps shutdown.timeout_s true.
            async with asyncio.timeout(timeout_s + STOP_SLACK_S):
                await runner.cleanup()
        except TimeoutError:
            log.warning("stopped with requests still in flight after shutdown.timeout_s")
    finally:
        # Signals that come while the process ends must not end it otherwise.
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        if follower is not None:
            follower.cancel()
        if pid_file is not None:
            with contextlib.suppress(OSError):
                pid_file.unlink()


def _reloads_in_turn(
    app: web.Application, path: Path, as_run: Callable[[Config], Config]
) -> Callable[[], None]:
    """SIGHUP's handler: one reload at a time, in the order the signals came, so the last
    file read wins."""
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()
    one_at_a_time = asyncio.Lock()

    async def reload_in_turn() -> None:
        async with one_at_a_time:
            await reload_config(app, path, as_run)

    def reload() -> None:
        task = loop.create_task(reload_in_turn())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    return reload


def _sighup_to_a_worker() -> None:
    log.warning(
        "SIGHUP ignored: a worker takes its config from its supervisor (process %d), which "
        "reloads on a SIGHUP of its own",
        os.getppid(),
    )


async def _follow(
    app: web.Application,
    path: Path,
    fd: int,
    as_run: Callable[[Config], Config],
    stop: _Stop,
) -> None:
    """A worker takes each reload its supervisor hands over, and stops when it is gone."""

    async def take(message: handover.Message) -> None:
        if isinstance(message, handover.Refused):
            _refused(app, path, list(message.problems))
        else:
            take_config(app, path, message, as_run)

    await handover.follow(fd, take)
    if not stop.requested.done():
        log.warning("the supervisor is gone: stopping as on SIGTERM")
    stop.drain("the supervisor's end")


class _Stop:
    """What ends the process: SIGTERM (or, in a worker, its supervisor gone) drains first,
    SIGINT stops at once. One drain however many SIGTERMs come (a supervisor passes its own
    on, systemd signals every process of a service): only SIGINT cuts a drain short."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        # True: drain first.
        self.requested: asyncio.Future[bool] = loop.create_future()
        self.now = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self.drain, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.stop_now)

    def drain(self, why: str) -> None:
        if not self.requested.done():
            self.requested.set_result(True)
        else:
            log.info("%s while stopping: ignored, the stop goes on (SIGINT ends a drain)", why)

    def stop_now(self) -> None:
        self.now.set()
        if not self.requested.done():
            self.requested.set_result(False)


async def _drain(app: web.Application, stop: _Stop) -> None:
    drain_s = app[LIVE_CONFIG].current.shutdown.drain_s
    app[READINESS].draining = True
    log.info("draining: /readyz answers 503; still serving for %g s", drain_s)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(drain_s):
            await stop.now.wait()


def write_pid(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        raise StartError(f"cannot write pid_file {path} ({exc.strerror})") from None


def _report_ready(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, b"1")
        os.close(fd)
