"""`workers: N`: N gateway processes on the same ports, and the one process that keeps them.

The supervisor reserves each port (a bound SO_REUSEPORT socket, so port 0 works too), runs
the embedded sandbox once for all workers, starts the workers with their place in the
environment and the config it has in force handed over (runtime/workers.py,
runtime/handover.py), says "listening" once every worker does, and starts a worker again if it
dies. It reads the file at a SIGHUP and hands the workers the result (runtime/reload.py), and
watches the secret and token files for them (runtime/secret_files.py); it passes SIGTERM and
SIGINT on, each once. What workers must share (tokens and their single flight, the callbacks
outbox, the seen signs) is in Redis, so N > 1 needs cache.backend: redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from aiohttp import web
from prometheus_client import multiprocess

from gateway import __version__, logs
from gateway.config.live import LiveConfig
from gateway.config.model import Config, Placement
from gateway.core.clock import SystemClock
from gateway.metrics import MULTIPROCESS_DIR_ENV
from gateway.runtime import handover, reload, signals
from gateway.runtime.listeners import StartError, http_url, sandbox_runner, start_listener
from gateway.runtime.reload import AsRun, as_is
from gateway.runtime.resources import sandbox_app
from gateway.runtime.secret_files import Change, SecretFiles
from gateway.runtime.serve import remove_pid, write_pid
from gateway.runtime.workers import PLACEMENT_ENV, Ports, SupervisorPipes, WorkerEnvironment

log = logs.logger("neu_gateway.supervisor")

RESTART_PAUSE_S = 1.0


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening, SO_REUSEPORT socket: the port is ours, workers share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    return sock


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Where the supervisor hands it reloads, while it runs.
    sender: handover.Sender | None = None


class Supervisor:
    def __init__(
        self, config: Config, path: Path, argv: Sequence[str], as_run: AsRun = as_is
    ) -> None:
        self._config = config
        # The config in force: what a worker started now gets. A reload swaps it as a
        # worker's own LiveConfig does, so what only a restart of the gateway changes keeps
        # its first value in a worker started again too (the ports, the Redis, the limits).
        self._live = LiveConfig(config, time.time())
        self._path = path
        # What a reload makes of the file's config: the command line's --workers.
        self._as_run = as_run
        # How to start one worker: the same command line, serving the same file.
        self._argv = list(argv)
        self._workers = [_Worker(index) for index in range(config.workers)]
        self._stopping = False
        # The stop signals passed on to the workers, each once.
        self._passed_on: set[signal.Signals] = set()
        self._sandbox: web.Application | None = None
        self._sandbox_url: str | None = None
        self._reserved: list[socket.socket] = []
        self._start_failed: asyncio.Future[None] | None = None
        # Where the workers' metrics live, so /metrics on any of them adds up all of them.
        self._metrics_dir = Path(tempfile.mkdtemp(prefix="neu-gateway-metrics-"))

    async def run(self) -> None:
        config = self._config
        loop = asyncio.get_running_loop()
        shared_sandbox = await self._start_sandbox()
        watch: asyncio.Future[None] | None = None
        try:
            ports = Ports(
                listen=self._reserve(config.listen.host, config.listen.port),
                callbacks=(
                    self._reserve(config.callbacks.listen.host, config.callbacks.listen.port)
                    if config.callbacks.listen is not None
                    else None
                ),
                admin=(
                    self._reserve(config.admin.listen.host, config.admin.listen.port)
                    if config.admin.listen is not None
                    else None
                ),
            )
            stopped: asyncio.Future[signal.Signals] = loop.create_future()
            signals.install(
                loop,
                terminate=partial(self._stop, signal.SIGTERM, stopped),
                interrupt=partial(self._stop, signal.SIGINT, stopped),
                # One reload at a time, in the order the signals came: the last file read wins.
                reload=reload.in_turn(self._reload),
            )
            watch = self._watch_secret_files()
            start_failed = self._start_failed = loop.create_future()
            keepers = [asyncio.ensure_future(self._keep(worker, ports)) for worker in self._workers]
            all_ready = asyncio.ensure_future(
                asyncio.gather(*(worker.ready.wait() for worker in self._workers))
            )
            await asyncio.wait(
                {all_ready, start_failed, stopped}, return_when=asyncio.FIRST_COMPLETED
            )
            if not all_ready.done():
                all_ready.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await all_ready
            if start_failed.done():
                self._stop(signal.SIGINT, loop.create_future())
                await asyncio.gather(*keepers)
                start_failed.result()
            if stopped.done():
                await asyncio.gather(*keepers)
                return
            if config.pid_file is not None:
                write_pid(config.pid_file)
            log.info(
                "neu-gateway listening on %s (%d workers, version %s)",
                http_url(config.listen.host, ports.listen),
                config.workers,
                __version__,
            )
            await stopped
            await asyncio.gather(*keepers)
        finally:
            if watch is not None:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
            for worker in self._workers:
                if worker.sender is not None:
                    worker.sender.close()
            for sock in self._reserved:
                sock.close()
            if shared_sandbox is not None:
                await shared_sandbox.cleanup()
            if config.pid_file is not None:
                remove_pid(config.pid_file)
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _reserve(self, host: str, port: int) -> int:
        sock = reserve_port(host, port)
        self._reserved.append(sock)
        bound: int = sock.getsockname()[1]
        return bound

    async def _start_sandbox(self) -> web.AppRunner | None:
        config = self._config
        if not config.sandbox_apps:
            return None
        self._sandbox = sandbox_app(config)
        # (Requests held at the sandbox may keep a stop a second, not aiohttp's 60 s.)
        runner = sandbox_runner(self._sandbox, config.limits, gateways=config.workers)
        self._sandbox_url = await start_listener(runner, config.sandbox.listen, "sandbox.listen")
        log.info(
            "sandbox listening on %s (apps: %s)",
            self._sandbox_url,
            ", ".join(entry.name for entry in config.sandbox_apps),
        )
        return runner

    async def _keep(self, worker: _Worker, ports: Ports) -> None:
        """Runs the worker, and again whenever it dies, until the gateway stops."""
        while not self._stopping:
            code = await self._run_worker(worker, ports)
            if self._stopping or not worker.ready.is_set():
                return
            log.error(
                "worker %d exited with status %s; starting it again in %g s",
                worker.index,
                code,
                RESTART_PAUSE_S,
            )
            await asyncio.sleep(RESTART_PAUSE_S)

    async def _run_worker(self, worker: _Worker, ports: Ports) -> int:
        read_fd, write_fd = os.pipe()
        config_in, config_out = os.pipe()
        environment = WorkerEnvironment(
            Placement(index=worker.index, sandbox_url=self._sandbox_url),
            ports,
            SupervisorPipes(ready_fd=write_fd, handover_fd=config_in),
        )
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self._argv,
                env={
                    **os.environ,
                    PLACEMENT_ENV: environment.dumps(),
                    MULTIPROCESS_DIR_ENV: str(self._metrics_dir),
                },
                pass_fds=(write_fd, config_in),
            )
        except BaseException:
            os.close(read_fd)
            os.close(config_out)
            raise
        finally:
            os.close(write_fd)
            os.close(config_in)
        try:
            sender = await handover.Sender.open(config_out)
        except BaseException:
            os.close(read_fd)
            raise
        if self._stopping:
            # Told to stop while it was being started, so no signal reached it: the pipe
            # closed unsaid ends it.
            sender.close()
        else:
            # With no await from here on: a reload either is in the config sent now or is
            # sent after it.
            sender.send(self._live.current)
        worker.sender = sender
        try:
            return await self._watch(worker, worker.process, read_fd)
        finally:
            worker.sender = None
            sender.close()

    async def _watch(
        self, worker: _Worker, process: asyncio.subprocess.Process, read_fd: int
    ) -> int:
        try:
            # b"1" once it listens; b"" (the pipe closed) if it died first.
            said = await asyncio.to_thread(os.read, read_fd, 1)
        finally:
            os.close(read_fd)
        if said == b"1":
            worker.ready.set()
        elif not worker.ready.is_set():
            # It never got to listen: starting it again would fail the same way.
            code = await process.wait()
            self._failed_start(worker.index, code)
            return code
        code = await process.wait()
        # Its gauges leave the sums; its counters stay, as a restart does not undo traffic.
        multiprocess.mark_process_dead(process.pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]
        return code

    def _failed_start(self, index: int, code: int) -> None:
        if self._stopping:
            return  # told to stop while it started: no failure
        if self._start_failed is not None and not self._start_failed.done():
            self._start_failed.set_exception(
                StartError(f"worker {index} exited with status {code} before it listened")
            )

    def _stop(self, signum: signal.Signals, stopped: asyncio.Future[signal.Signals]) -> None:
        self._stopping = True
        # A SIGTERM passed on again would be one more for every worker, and SIGINT after
        # SIGINT changes nothing: each kind goes once, SIGTERM only as the first.
        if signum in self._passed_on or (signum == signal.SIGTERM and self._passed_on):
            log.info("%s while stopping: ignored, the stop goes on", signum.name)
        else:
            self._passed_on.add(signum)
            for worker in self._workers:
                if worker.process is not None and worker.process.returncode is None:
                    worker.process.send_signal(signum)
        if not stopped.done():
            stopped.set_result(signum)

    def _watch_secret_files(self) -> asyncio.Future[None] | None:
        watch_s = self._config.secrets.watch_s
        if watch_s == 0:
            return None
        watch = SecretFiles(self._live, SystemClock(), watch_s, self._rotate)
        return asyncio.ensure_future(watch.run())

    def _rotate(self, changes: list[Change]) -> None:
        message = reload.rotate_for_workers(self._live, self._sandbox, changes)
        # Sent in the order taken, after any reload before it: each worker ends as the
        # supervisor's config in force is.
        for worker in self._workers:
            if worker.sender is not None:
                worker.sender.send(message)

    async def _reload(self) -> None:
        message = await reload.read_for_workers(self._path, self._as_run, self._live, self._sandbox)
        # Every worker gets the same reading of the files, a worker still starting too: it
        # takes what it is sent once it listens.
        for worker in self._workers:
            if worker.sender is not None:
                worker.sender.send(message)
