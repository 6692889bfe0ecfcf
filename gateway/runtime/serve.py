"""The gateway process's life: listen, reload on SIGHUP, drain on SIGTERM, stop.

SIGHUP re-reads the config file and swaps it in whole (runtime/reload.py); a worker of
`--workers` takes its reloads from its supervisor instead. SIGTERM marks the gateway unready
(/readyz 503) at once, keeps serving for shutdown.drain_s so load balancers can stop sending,
then closes the listeners and gives requests in flight up to shutdown.timeout_s; more SIGTERMs
change nothing. SIGINT (Ctrl-C) skips the drain, or cuts one short. (runtime/signals.py has
the whole table.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from functools import partial
from pathlib import Path

from aiohttp import web

from gateway import __version__, logs
from gateway.config.model import Config
from gateway.config.schema import ListenConfig
from gateway.http.keys import CONFIG, LIVE_CONFIG, METRICS, READINESS
from gateway.http.server import GuardedRunner
from gateway.runtime import heap, reload, signals
from gateway.runtime.listeners import (
    EGRESS,
    StartError,
    connection_limits,
    http_url,
    start_listener,
)
from gateway.runtime.reload import AsRun, as_is
from gateway.runtime.workers import WorkerEnvironment

log = logs.logger("neu_gateway")
# What stopping may take beyond shutdown.timeout_s: closing the stores and the sessions.
STOP_SLACK_S = 1.0


async def serve_gateway(
    app: web.Application,
    config: Config,
    path: Path,
    worker: WorkerEnvironment | None = None,
    as_run: AsRun = as_is,
) -> None:
    """Serves until stopped. A reload reads `path` and runs `as_run` of it; in a worker
    (`worker` set), which shares its ports, the supervisor reads it and hands it over."""
    # Half: aiohttp waits this long for requests, cancels them, then may wait as long again.
    runner = GuardedRunner(
        app,
        connection_limits(config),
        on_refused=app[METRICS].count_refused,
        on_evicted=app[METRICS].count_evicted,
        on_connections=app[METRICS].connections_on(EGRESS),
        shutdown_timeout=config.shutdown.timeout_s / 2,
    )
    await start_listener(runner, config.listen, "listen", shared=worker is not None)
    loop = asyncio.get_running_loop()
    stop = _Stop(loop)
    signals.install(
        loop,
        terminate=partial(stop.drain, "SIGTERM"),
        interrupt=stop.stop_now,
        reload=(
            reload.in_turn(partial(reload.reload_config, app, path, as_run))
            if worker is None
            else reload.sighup_to_a_worker
        ),
    )
    follower = (
        None
        if worker is None
        else loop.create_task(_follow(app, path, worker.pipes.handover_fd, as_run, stop))
    )
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
    if worker is not None:
        log.info("worker %d listening", worker.placement.index)
        _report_ready(worker.pipes.ready_fd)
    else:
        for address, bound_port, *_ in runner.addresses:
            log.info(
                "neu-gateway listening on %s (version %s)",
                http_url(address, bound_port),
                __version__,
            )
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
        signals.ignore_all()
        if follower is not None:
            follower.cancel()
        if pid_file is not None:
            remove_pid(pid_file)


async def _follow(app: web.Application, path: Path, fd: int, as_run: AsRun, stop: _Stop) -> None:
    """A worker takes each reload its supervisor hands over, and stops when it is gone."""
    await reload.follow_supervisor(app, path, fd, as_run)
    if not stop.requested.done():
        log.warning("the supervisor is gone: stopping as on SIGTERM")
    stop.drain("the supervisor's end")


class _Stop:
    """What ends the process: SIGTERM (or, in a worker, its supervisor gone) drains first,
    SIGINT stops at once. One drain however many SIGTERMs come (a supervisor passes its own
    on, systemd signals every process of a service): only SIGINT cuts a drain short."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # True: drain first.
        self.requested: asyncio.Future[bool] = loop.create_future()
        self.now = asyncio.Event()

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


async def serve_until_stopped(
    runner: web.AppRunner, listen: ListenConfig, what: str, key: str
) -> None:
    """A listener of its own (the sandbox command's) until SIGTERM or SIGINT."""
    await start_listener(runner, listen, key)
    stop = asyncio.Event()
    signals.install(asyncio.get_running_loop(), terminate=stop.set, interrupt=stop.set)
    for address, bound_port, *_ in runner.addresses:
        log.info("%s listening on %s", what, http_url(address, bound_port))
    await stop.wait()
    log.info("%s stopping: finishing requests in flight", what)
    await runner.cleanup()


def write_pid(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        raise StartError(f"cannot write pid_file {path} ({exc.strerror})") from None


def remove_pid(path: Path) -> None:
    """Removes the pid file only while it names this process: a second gateway started on
    the same config, failing (its port taken), must not take the running one's file away."""
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()


def _report_ready(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, b"1")
        os.close(fd)
