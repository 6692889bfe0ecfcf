"""A worker's environment, as the supervisor writes it and the worker reads it, and the config
as a worker runs it."""

from __future__ import annotations

import sys

import pytest

from gateway.config.load import from_mapping
from gateway.config.model import Config, Placement
from gateway.runtime.workers import (
    PLACEMENT_ENV,
    Ports,
    SupervisorPipes,
    WorkerEnvironment,
    placed,
    refusal,
    worker_argv,
)

WORKER = WorkerEnvironment(
    Placement(index=2, sandbox_url="http://127.0.0.1:8090"),
    Ports(listen=8080, callbacks=8081, admin=None),
    SupervisorPipes(ready_fd=7, handover_fd=9),
)


def config(**extra: object) -> Config:
    document = {
        "listen": {"port": 0},
        "apps": {"demo": {"appid": "demo-appid", "secret_env": "S", "upstream": "sandbox"}},
        "callbacks": {"listen": {"port": 0}},
        "admin": {"listen": {"port": 0}},
        "pid_file": "/run/neu-gateway.pid",
        **extra,
    }
    return from_mapping(document, {"S": "s3cret-value"})


def test_what_the_supervisor_writes_the_worker_reads() -> None:
    assert WorkerEnvironment.read({PLACEMENT_ENV: WORKER.dumps()}) == WORKER


@pytest.mark.parametrize("environ", [{}, {PLACEMENT_ENV: ""}], ids=["unset", "empty"])
def test_outside_a_worker_there_is_none(environ: dict[str, str]) -> None:
    assert WorkerEnvironment.read(environ) is None


def test_a_worker_runs_on_the_supervisors_ports_with_no_pid_file() -> None:
    mine = placed(config(), WORKER)
    assert mine.listen.port == 8080
    assert mine.callbacks.listen is not None
    assert mine.callbacks.listen.port == 8081
    # None: the supervisor reserved no admin port, so the config's stands.
    assert mine.admin.listen is not None
    assert mine.admin.listen.port == 0
    assert mine.pid_file is None
    assert mine.placement == WORKER.placement


def test_a_listener_the_config_has_not_stays_off() -> None:
    bare = from_mapping(
        {"apps": {"demo": {"appid": "demo-appid", "secret_env": "S", "upstream": "sandbox"}}},
        {"S": "s3cret-value"},
    )
    assert placed(bare, WORKER).callbacks.listen is None


def test_several_workers_need_redis() -> None:
    assert refusal(config()) is None
    problem = refusal(config(workers=2))
    assert problem is not None
    assert problem.startswith("workers: 2 needs cache.backend: redis: ")
    shared = config(workers=2, cache={"backend": "redis", "url": "redis://127.0.0.1:6379/0"})
    assert refusal(shared) is None


def test_a_worker_is_started_as_this_process_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/bin/neu-gateway", "serve", "-c", "gw.yaml"])
    assert worker_argv() == [sys.executable, "-m", "gateway", "serve", "-c", "gw.yaml"]
