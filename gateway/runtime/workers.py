"""A worker of `workers: N`, as both ends see it: the command line it is started with, what
its supervisor tells it in its environment, and the config as it runs it.

A worker is told its Placement (its number, the sandbox all workers share), the ports the
supervisor reserved for all of them, and the pipes to its supervisor: one to say that it
listens, one to take the config in force from (gateway/runtime/handover.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace

from gateway.config.model import Config, Placement

# The worker's environment, as JSON: {"index", "listen_port", "callbacks_port", "admin_port",
# "sandbox_url", "ready_fd", "handover_fd"}.
PLACEMENT_ENV = "NEU_GATEWAY_WORKER"
MAX_WORKERS = 64


@dataclass(frozen=True)
class Ports:
    """The ports the supervisor reserved, which every worker listens on (None: not
    configured)."""

    listen: int
    callbacks: int | None
    admin: int | None


@dataclass(frozen=True)
class SupervisorPipes:
    """A worker's pipes to its supervisor: it says on `ready_fd` that it listens, and takes
    the config in force from `handover_fd`."""

    ready_fd: int
    handover_fd: int


@dataclass(frozen=True)
class WorkerEnvironment:
    """What the supervisor tells a worker it starts, in PLACEMENT_ENV."""

    placement: Placement
    ports: Ports
    pipes: SupervisorPipes

    def dumps(self) -> str:
        return json.dumps(
            {
                "index": self.placement.index,
                "listen_port": self.ports.listen,
                "callbacks_port": self.ports.callbacks,
                "admin_port": self.ports.admin,
                "sandbox_url": self.placement.sandbox_url,
                "ready_fd": self.pipes.ready_fd,
                "handover_fd": self.pipes.handover_fd,
            }
        )

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> WorkerEnvironment | None:
        """Where the supervisor put this worker; None outside a worker."""
        raw = environ.get(PLACEMENT_ENV)
        if not raw:
            return None
        said = json.loads(raw)
        return cls(
            Placement(index=said["index"], sandbox_url=said["sandbox_url"]),
            Ports(said["listen_port"], said["callbacks_port"], said["admin_port"]),
            SupervisorPipes(said["ready_fd"], said["handover_fd"]),
        )


def placed(config: Config, worker: WorkerEnvironment) -> Config:
    """The config as this worker runs it: on the supervisor's ports, with no pid_file."""
    ports = worker.ports
    listen = config.listen.model_copy(update={"port": ports.listen})
    callbacks = config.callbacks
    if callbacks.listen is not None and ports.callbacks is not None:
        callbacks = callbacks.model_copy(
            update={"listen": callbacks.listen.model_copy(update={"port": ports.callbacks})}
        )
    admin = config.admin
    if admin.listen is not None and ports.admin is not None:
        admin = admin.model_copy(
            update={"listen": admin.listen.model_copy(update={"port": ports.admin})}
        )
    return replace(
        config,
        listen=listen,
        callbacks=callbacks,
        admin=admin,
        pid_file=None,
        placement=worker.placement,
    )


def refusal(config: Config) -> str | None:
    """Why this config cannot run with several workers, if it cannot."""
    if config.workers > 1 and config.cache.backend != "redis":
        return (
            f"workers: {config.workers} needs cache.backend: redis: the token cache and its "
            "single flight, the callbacks outbox and the seen callback signs must be shared by "
            "the workers (with the memory backend each would keep its own)"
        )
    return None


def worker_argv() -> list[str]:
    """The command line a worker is started with: this one."""
    return [sys.executable, "-m", "gateway", *sys.argv[1:]]
