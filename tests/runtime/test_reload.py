"""A reload: the file read anew and put in force whole, or refused with the running config kept;
in one process, and by a supervisor for its workers."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config.errors import ConfigError
from gateway.config.live import LiveConfig
from gateway.config.load import from_mapping, load
from gateway.config.model import Config
from gateway.core import signing
from gateway.egress.keys import BASE_URLS
from gateway.http.keys import LIVE_CONFIG, METRICS
from gateway.runtime import handover
from gateway.runtime.app import create_app
from gateway.runtime.reload import (
    apply_config,
    as_is,
    follow_supervisor,
    in_turn,
    read_for_workers,
    reload_config,
    sandbox_problems,
    tell_sandbox,
)
from gateway.sandbox.server import create_sandbox_app
from tests.conftest import gateway_config, guarded
from tests.support.held_request import post_held
from tests.support.paths import BENCH_ECHO as ECHO
from tests.support.paths import DETAIL
from tests.support.platform_double import APPID, SECRET, reference_sign
from tests.support.processes import write_config
from tests.support.scripted_platform import serve_scripted


async def test_a_request_in_flight_keeps_its_upstream_and_secret(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    first, first_url = await serve_scripted(aiohttp_server)
    second, second_url = await serve_scripted(aiohttp_server)
    gateway = await aiohttp_client(guarded(create_app(gateway_config(first_url))))
    held = await post_held(gateway, ECHO)
    demo = {"appid": APPID, "secret_env": "ROTATED", "upstream": second_url}
    apply_config(gateway.app, from_mapping({"apps": {"demo": demo}}, {"ROTATED": "rotated-secret"}))
    held.release.set()
    response = await held.response
    assert response.status == 200
    assert second.received == []
    [received] = first.received
    assert signing.verify(received, SECRET)
    # The next request gets the new config: the new upstream, signed with the new secret.
    assert (await gateway.post(ECHO, data={"x": "2"})).status == 200
    [renewed] = second.received
    assert signing.verify(renewed, "rotated-secret")


async def test_a_reload_naming_a_tls_file_that_cannot_be_used_is_refused(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    first, first_url = await serve_scripted(aiohttp_server)
    gateway = await aiohttp_client(guarded(create_app(gateway_config(first_url))))
    demo = {
        "appid": APPID,
        "secret_env": "S",
        "upstream": first_url,
        "tls": {"ca_file": str(tmp_path)},  # a directory
    }
    with pytest.raises(ConfigError, match=r"apps\.demo\.tls\.ca_file: cannot use"):
        apply_config(gateway.app, from_mapping({"apps": {"demo": demo}}, {"S": "x"}))
    assert (await gateway.post(ECHO, data={"x": "1"})).status == 200
    assert signing.verify(first.received[-1], SECRET), "the running config stayed"


async def reloads_counted(app: web.Application) -> dict[str, float]:
    """neu_gateway_config_reloads_total by result, as /metrics shows it."""
    text = (await app[METRICS].exposition()).decode()
    counted = re.findall(r'^neu_gateway_config_reloads_total\{result="(\w+)"\} (\S+)$', text, re.M)
    return {result: float(value) for result, value in counted}


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEU_SECRET_DEMO", SECRET)
    return write_config(tmp_path, "https://platform.example")


def swap_line(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


async def test_a_reload_puts_the_file_in_force_and_counts_it(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(load(config_file))
    swap_line(config_file, "upstream: https://platform.example", "upstream: https://next.example")
    with caplog.at_level(logging.INFO, "neu_gateway"):
        assert await reload_config(app, config_file)
    assert app[LIVE_CONFIG].current.apps["demo"].upstream == "https://next.example"
    assert app[BASE_URLS]["demo"] == "https://next.example"
    assert caplog.messages[-1] == f"config reloaded from {config_file}"
    assert (await reloads_counted(app))["ok"] == 1


async def test_a_reload_names_what_only_a_restart_changes(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(load(config_file))
    swap_line(config_file, "listen: {host: 127.0.0.1, port: 0}", "listen: {port: 8181}")
    assert await reload_config(app, config_file)
    assert app[LIVE_CONFIG].current.listen.port == 0
    assert caplog.messages[-1] == (
        f"config reloaded from {config_file}; changed but kept until a restart: listen"
    )


async def test_a_wrong_file_is_refused_and_the_running_config_stays(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load(config_file)
    app = create_app(config)
    swap_line(config_file, "secret_env: NEU_SECRET_DEMO", "secret_env: NOT_SET_ANYWHERE")
    assert not await reload_config(app, config_file)
    assert app[LIVE_CONFIG].current is config
    [refusal] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert refusal.getMessage().startswith(
        f"config reload refused, the running config stays: {config_file}: apps.demo.secret_env"
    )
    assert (await reloads_counted(app))["failed"] == 1


async def test_a_reload_that_fails_otherwise_names_the_exception_by_its_type_only(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(load(config_file))

    def breaks(new: Config) -> Config:
        raise RuntimeError(f"a message quoting {SECRET}")

    assert not await reload_config(app, config_file, breaks)
    assert caplog.messages[-1] == (
        f"config reload failed, the running config stays: {config_file}: RuntimeError"
    )
    assert SECRET not in caplog.text


def sandbox_config(secret: str, *appids: str) -> Config:
    apps = {
        f"app{index}": {"appid": appid, "secret_env": "S", "upstream": "sandbox"}
        for index, appid in enumerate(appids)
    }
    return from_mapping({"apps": apps}, {"S": secret})


@pytest.mark.parametrize(
    ("new", "running", "problems"),
    [
        (gateway_config("https://platform.example"), None, []),
        (
            sandbox_config("s", APPID),
            None,
            ["apps (app0): upstream sandbox needs a restart (no embedded sandbox runs)"],
        ),
        (sandbox_config("s", APPID), [APPID], []),
        (
            sandbox_config("s", APPID, "new-appid"),
            [APPID],
            ["apps.app1: a new app on the embedded sandbox needs a restart"],
        ),
    ],
    ids=["no sandbox app", "no sandbox running", "the apps it knows", "an app it does not know"],
)
def test_what_a_reload_asks_of_the_sandbox_that_needs_a_restart(
    new: Config, running: list[str] | None, problems: list[str]
) -> None:
    sandbox = None if running is None else create_sandbox_app(dict.fromkeys(running, "s"))
    assert sandbox_problems(new, sandbox) == problems


async def test_the_sandbox_is_told_a_changed_secret(aiohttp_client: Any) -> None:
    sandbox = create_sandbox_app({APPID: "old-secret"})
    client = await aiohttp_client(sandbox)

    async def answer_to(secret: str) -> int:
        fields = {"tradeNo": "T-1", "appid": APPID, "timestamp": str(time.time_ns() // 10**6)}
        fields["sign"] = reference_sign(fields, secret)
        response = await client.get(DETAIL, params=fields)
        status: int = (await response.json())["responseHeader"]["status"]
        return status

    assert await answer_to("new-secret") == 401
    tell_sandbox(sandbox, sandbox_config("old-secret", APPID), sandbox_config("new-secret", APPID))
    assert await answer_to("new-secret") == 404, "signed right: the trade is what is missing"


async def test_reloads_run_one_at_a_time_in_the_order_asked() -> None:
    ran: list[str] = []
    changed = asyncio.Condition()
    release = asyncio.Event()

    async def reload() -> None:
        mine = sum(step.startswith("start") for step in ran) + 1
        async with changed:
            ran.append(f"start {mine}")
            changed.notify_all()
        await release.wait()
        async with changed:
            ran.append(f"end {mine}")
            changed.notify_all()

    handler = in_turn(reload)
    for _ in range(3):
        handler()
    async with asyncio.timeout(5), changed:
        await changed.wait_for(lambda: ran == ["start 1"])
        # The first is under way; the others wait their turn, in order.
        release.set()
        await changed.wait_for(lambda: len(ran) == 6)
    assert ran == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]


async def test_a_worker_takes_what_its_supervisor_hands_over_in_order(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(load(config_file))
    read_fd, write_fd = os.pipe()
    sender = await handover.Sender.open(write_fd)
    sender.send(handover.Refused(("apps.demo.secret_env: environment variable S is not set",)))
    swap_line(config_file, "upstream: https://platform.example", "upstream: https://next.example")
    sender.send(load(config_file))
    sender.close()
    # Returns once the supervisor's end is closed.
    with caplog.at_level(logging.INFO, "neu_gateway"):
        await follow_supervisor(app, config_file, read_fd, as_is)
    assert app[LIVE_CONFIG].current.apps["demo"].upstream == "https://next.example"
    assert await reloads_counted(app) == {"ok": 1, "failed": 1}
    refused, taken = [r.getMessage() for r in caplog.records if "config reload" in r.getMessage()]
    assert refused.startswith("config reload refused, the running config stays")
    assert taken == f"config reloaded from {config_file}"


async def test_the_supervisor_reads_the_file_for_its_workers(config_file: Path) -> None:
    running = load(config_file)
    live = LiveConfig(running, time.time())
    swap_line(config_file, "upstream: https://platform.example", "upstream: https://next.example")
    taken = await read_for_workers(config_file, as_is, live, None)
    assert isinstance(taken, Config)
    assert taken.apps["demo"].upstream == "https://next.example"
    assert live.current.apps["demo"].upstream == "https://next.example"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "secret_env: NEU_SECRET_DEMO",
            "secret_env: NOT_SET_ANYWHERE",
            "apps.demo.secret_env: environment variable NOT_SET_ANYWHERE is not set",
        ),
        (
            "upstream: https://platform.example",
            "upstream: sandbox",
            "apps (demo): upstream sandbox needs a restart (no embedded sandbox runs)",
        ),
        (
            "upstream: https://platform.example",
            "upstream: https://platform.example\n    tls: {ca_file: /}",
            "apps.demo.tls.ca_file: cannot use",
        ),
    ],
    ids=["a secret that cannot be read", "a sandbox app with none running", "a TLS file"],
)
async def test_the_supervisor_refuses_for_every_worker_and_keeps_its_config(
    config_file: Path, old: str, new: str, problem: str
) -> None:
    running = load(config_file)
    live = LiveConfig(running, time.time())
    swap_line(config_file, old, new)
    refused = await read_for_workers(config_file, as_is, live, None)
    assert isinstance(refused, handover.Refused)
    [said] = refused.problems
    assert said.startswith(problem)
    assert live.current is running


async def test_the_supervisor_names_a_failed_reading_by_its_type_only(config_file: Path) -> None:
    def breaks(new: Config) -> Config:
        raise RuntimeError(f"a message quoting {SECRET}")

    live = LiveConfig(load(config_file), time.time())
    refused = await read_for_workers(config_file, breaks, live, None)
    assert refused == handover.Refused(("reading it failed (RuntimeError)",))
