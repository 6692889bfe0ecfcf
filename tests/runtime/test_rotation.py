"""A changed secret file put in force by the app's watch, as a reload would; a supervisor's
side of it; and the warning a reload gives of secrets it cannot renew (the environment)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway import logs
from gateway.config.live import LiveConfig
from gateway.config.load import from_mapping, load
from gateway.config.model import Config, Placement
from gateway.core import signing
from gateway.core.redaction import REDACTED
from gateway.http.keys import LIVE_CONFIG
from gateway.runtime import handover
from gateway.runtime.app import create_app
from gateway.runtime.keys import EMBEDDED_SANDBOX
from gateway.runtime.reload import (
    as_is,
    follow_supervisor,
    read_for_workers,
    reload_config,
    rotate_for_workers,
)
from gateway.runtime.secret_files import SecretFiles
from gateway.sandbox.controls import WORLD
from gateway.sandbox.server import create_sandbox_app
from tests.conftest import guarded
from tests.support.clock import MutableClock
from tests.support.held_request import post_held
from tests.support.paths import BENCH_ECHO as ECHO
from tests.support.paths import DETAIL, SANDBOX_ECHO
from tests.support.platform_double import APPID, SECRET, reference_sign
from tests.support.processes import write_config
from tests.support.scripted_platform import serve_scripted
from tests.support.waiting import until

ENV_WARNING = (
    "apps.demo.secret_env: a running gateway keeps the value NEU_SECRET_DEMO had when it "
    "started (a reload cannot see a changed environment); to rotate this secret, use "
    "secret_file, which is watched and taken without a restart, or restart the gateway"
)


def file_config(upstream: str, secret_file: Path, watch_s: float = 5) -> Config:
    secret_file.write_text(SECRET + "\n")
    document = {
        "apps": {"demo": {"appid": APPID, "secret_file": str(secret_file), "upstream": upstream}},
        "timeouts": {"connect_s": 2, "total_s": 5},
        "secrets": {"watch_s": watch_s},
    }
    return from_mapping(document, {})


async def test_a_request_in_flight_keeps_its_secret_and_the_next_gets_the_new_one(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scripted, url = await serve_scripted(aiohttp_server)
    clock = MutableClock()
    secret_file = tmp_path / "secret"
    gateway = await aiohttp_client(guarded(create_app(file_config(url, secret_file), clock)))
    held = await post_held(gateway, ECHO)
    secret_file.write_text("rotated-secret\n")
    await clock.until_sleeping()
    with caplog.at_level(logging.INFO, "neu_gateway"):
        clock.advance(5)
        await until(lambda: "is in force" in caplog.text)
    held.release.set()
    assert (await held.response).status == 200
    [in_flight] = scripted.received
    assert signing.verify(in_flight, SECRET)
    assert (await gateway.post(ECHO, data={"x": "2"})).status == 200
    assert signing.verify(scripted.received[-1], "rotated-secret")
    assert caplog.messages[-1] == (
        f"apps.demo.secret_file: {secret_file} changed; the new secret is in force"
    )
    assert "rotated-secret" not in caplog.text


async def test_the_embedded_sandbox_is_told_the_new_secret(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    clock = MutableClock()
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    config = from_mapping(
        {
            "apps": {
                "demo": {"appid": APPID, "secret_file": str(secret_file), "upstream": "sandbox"}
            },
            "sandbox": {"listen": {"port": 0}},
        },
        {},
    )
    gateway = await aiohttp_client(guarded(create_app(config, clock)))
    secret_file.write_text("rotated-secret\n")
    await clock.until_sleeping()
    clock.advance(5)
    await until(
        lambda: gateway.app[LIVE_CONFIG].current.apps["demo"].secret.matches("rotated-secret")
    )
    [(sandbox, _)] = gateway.app[EMBEDDED_SANDBOX]
    assert sandbox[WORLD].secrets[APPID] == "rotated-secret"
    response = await gateway.post(SANDBOX_ECHO, data={"x": "1"})
    assert (await response.json())["responseHeader"]["status"] == 200


@pytest.mark.parametrize(
    ("watch_s", "placement"),
    [(0, None), (5, Placement(index=0, sandbox_url=None))],
    ids=["watch_s 0", "a worker (its supervisor watches)"],
)
async def test_no_watch_runs_when_off_or_in_a_worker(
    aiohttp_client: Any,
    aiohttp_server: Any,
    tmp_path: Path,
    watch_s: float,
    placement: Placement | None,
) -> None:
    _, url = await serve_scripted(aiohttp_server)
    clock = MutableClock()
    config = file_config(url, tmp_path / "secret", watch_s)
    if placement is not None:
        config = replace(config, placement=placement)
    await aiohttp_client(guarded(create_app(config, clock)))
    # The upstream client's clock probe may sleep on the clock; the watch never does.
    assert clock.sleepers == 0


# The supervisor's side, and a worker's


async def test_the_supervisor_puts_a_change_in_force_and_tells_its_sandbox(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_file = tmp_path / "secret"
    config = file_config("sandbox", secret_file)
    live = LiveConfig(config, time.time())
    sandbox = create_sandbox_app({APPID: SECRET})
    client = await aiohttp_client(sandbox)
    secret_file.write_text("rotated-secret")
    sent: list[handover.Rotated] = []
    watch = SecretFiles(
        live,
        MutableClock(),
        5,
        lambda changes: sent.append(rotate_for_workers(live, sandbox, changes)),
    )
    with caplog.at_level(logging.INFO, "neu_gateway"):
        await watch.check()
    [message] = sent
    assert [change.source.key for change in message.changes] == ["apps.demo.secret_file"]
    assert live.current.apps["demo"].secret.reveal() == "rotated-secret"
    assert caplog.messages[-1] == (
        f"apps.demo.secret_file: {secret_file} changed; handing the new secret to the workers"
    )
    fields = {"tradeNo": "T-1", "appid": APPID, "timestamp": str(time.time_ns() // 10**6)}
    fields["sign"] = reference_sign(fields, "rotated-secret")
    answer = await (await client.get(DETAIL, params=fields)).json()
    assert answer["responseHeader"]["status"] == 404, "signed right: the trade is missing"


async def test_rotations_without_end_keep_the_redacted_values_bounded_and_those_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A token file a sidecar rewrites every few minutes: each retired value was kept for
    # redaction forever, and every log line paid for all of them.
    monkeypatch.setattr(logs, "REDACTION", logs.RedactingFilter())
    monkeypatch.setattr(logs, "MAX_REDACTED_SECRETS", 5)
    secret_file = tmp_path / "secret"
    config = file_config("sandbox", secret_file)
    live = LiveConfig(config, time.time())
    logs.REDACTION.add_secrets(config.credentials())
    watch = SecretFiles(
        live, MutableClock(), 5, lambda changes: rotate_for_workers(live, None, changes)
    )
    for turn in range(20):
        secret_file.write_text(f"rotated-secret-{turn:04d}")
        await watch.check()
    assert live.current.apps["demo"].secret.reveal() == "rotated-secret-0019"
    assert len(logs.REDACTION.secrets) <= 5
    for value in (*live.current.credentials(), "rotated-secret-0018"):
        assert logs.clipped(f"x {value} y", 100) == f"x {REDACTED} y"


async def test_a_worker_takes_a_rotation_its_supervisor_hands_over(
    aiohttp_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = await serve_scripted(aiohttp_server)
    secret_file = tmp_path / "secret"
    config = file_config(url, secret_file)
    live = LiveConfig(config, time.time())
    app = create_app(config)
    secret_file.write_text("rotated-secret")
    sent: list[handover.Rotated] = []
    watch = SecretFiles(
        live, MutableClock(), 5, lambda c: sent.append(rotate_for_workers(live, None, c))
    )
    await watch.check()
    read_fd, write_fd = os.pipe()
    sender = await handover.Sender.open(write_fd)
    sender.send(sent[0])
    sender.close()
    with caplog.at_level(logging.INFO, "neu_gateway"):
        await follow_supervisor(app, tmp_path / "gateway.yaml", read_fd, as_is)
    assert app[LIVE_CONFIG].current.apps["demo"].secret.reveal() == "rotated-secret"
    assert caplog.messages[-1] == (
        f"apps.demo.secret_file: {secret_file} changed; the new secret is in force"
    )


# A reload's warning of what it cannot renew


@pytest.fixture
def env_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEU_SECRET_DEMO", SECRET)
    return write_config(tmp_path, "https://platform.example")


async def test_a_reload_warns_of_each_secret_from_the_environment(
    env_config: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(load(env_config))
    # What the operator's shell may have exported: this process cannot see it, nor use it.
    monkeypatch.setenv("NEU_SECRET_DEMO", "exported-after-the-start")
    assert await reload_config(app, env_config)
    assert ENV_WARNING in caplog.messages


async def test_the_supervisor_warns_once_for_all_its_workers(
    env_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = LiveConfig(load(env_config), time.time())
    assert isinstance(await read_for_workers(env_config, as_is, live, None), Config)
    assert caplog.messages.count(ENV_WARNING) == 1


async def test_a_reload_of_files_only_warns_of_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    config = write_config(tmp_path, "https://platform.example")
    config.write_text(
        config.read_text().replace("secret_env: NEU_SECRET_DEMO", f"secret_file: {secret}")
    )
    app = create_app(load(config))
    assert await reload_config(app, config)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
