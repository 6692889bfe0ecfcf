"""Rotating a secret by its file, against `neu-gateway serve` under a steady stream of calls:
written in place or swapped as Kubernetes swaps a mounted secret, taken without a signal, in
one process and in every worker; and `reload`'s word on secrets from the environment."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.paths import SANDBOX_ECHO as ECHO
from tests.support.platform_double import APPID, SECRET
from tests.support.processes import (
    GATEWAY_COMMAND,
    GatewayProcess,
    StartGateway,
    write_config,
)
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.e2e]

WATCH_S = 0.2
TAKEN = "changed; the new secret is in force"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Mount:
    """A secret mounted as Kubernetes mounts one: `secret` -> `..data/secret`, `..data` ->
    a timestamped directory; an update makes a new directory and flips `..data` to it."""

    def __init__(self, directory: Path, value: str) -> None:
        self.directory = directory
        self.versions = 0
        self._write(value)
        (directory / "secret").symlink_to("..data/secret")

    @property
    def path(self) -> Path:
        return self.directory / "secret"

    def _write(self, value: str) -> None:
        self.versions += 1
        version = self.directory / f"..2026_01_0{self.versions}"
        version.mkdir(parents=True)
        (version / "secret").write_text(value + "\n")
        (self.directory / "..data_tmp").symlink_to(version.name)
        os.replace(self.directory / "..data_tmp", self.directory / "..data")

    def rotate(self, value: str) -> None:
        self._write(value)


@dataclass
class Answer:
    started: float
    http_status: int
    platform_status: int


@dataclass
class Stream:
    """Signed calls through the gateway, several at a time, until stopped: each answer kept."""

    session: aiohttp.ClientSession
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def caller(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                async with self.session.post(
                    self.url + ECHO, data={"x": "1"}, headers=self.headers
                ) as response:
                    body = await response.json()
                    answer = Answer(started, response.status, body["responseHeader"]["status"])
            except (aiohttp.ClientError, ValueError, KeyError) as exc:
                self.errors.append(exc)
                continue
            async with self.progress:
                self.answers.append(answer)
                self.progress.notify_all()

    async def more(self, count: int) -> None:
        target = len(self.answers) + count
        async with asyncio.timeout(30), self.progress:
            await self.progress.wait_for(lambda: len(self.answers) >= target)


async def rotate_platform(
    session: aiohttp.ClientSession, gateway: GatewayProcess, secret: str, keep_previous_s: str
) -> None:
    url = f"{gateway.sandbox_url}/sandbox/apps/{APPID}/secret"
    data = {"secret": secret, "keep_previous_s": keep_previous_s}
    async with session.post(url, data=data) as response:
        assert response.status == 200


def file_config(directory: Path, secret_file: Path, **extra: str) -> Path:
    config = write_config(directory, secrets=f"{{watch_s: {WATCH_S}}}", **extra)
    config.write_text(
        config.read_text().replace("secret_env: NEU_SECRET_DEMO", f"secret_file: {secret_file}")
    )
    return config


@pytest.mark.parametrize("how", ["written in place", "a symlink flipped"])
async def test_a_secret_rotated_at_the_platform_and_in_its_file_at_once_loses_no_request(
    start_gateway: StartGateway, tmp_path: Path, session: aiohttp.ClientSession, how: str
) -> None:
    if how == "written in place":
        secret_file = tmp_path / "secret"
        secret_file.write_text(SECRET + "\n")

        def rotate(value: str) -> None:
            secret_file.write_text(value + "\n")
    else:
        mount = Mount(tmp_path / "mount", SECRET)
        secret_file, rotate = mount.path, mount.rotate
    gateway = await start_gateway(file_config(tmp_path, secret_file))
    stream = Stream(session, gateway.url)
    callers = [asyncio.ensure_future(stream.caller()) for _ in range(8)]
    try:
        await stream.more(30)
        # The platform retires the old secret at once, the file changes the same moment: only
        # calls signed before the gateway read the file can meet the old secret refused.
        await rotate_platform(session, gateway, "rotated-secret", keep_previous_s="0")
        rotate("rotated-secret")
        await gateway.wait_for_log(f"apps.demo.secret_file: {secret_file} {TAKEN}")
        taken_at = time.monotonic()
        await stream.more(100)
    finally:
        stream.stop.set()
        await asyncio.gather(*callers)
    assert stream.errors == []
    assert {answer.http_status for answer in stream.answers} == {200}, "every call answered"
    after = [answer for answer in stream.answers if answer.started > taken_at]
    assert len(after) >= 100
    assert {answer.platform_status for answer in after} == {200}
    refused = [answer for answer in stream.answers if answer.platform_status != 200]
    assert {answer.platform_status for answer in refused} <= {401}
    assert all(answer.started < taken_at for answer in refused)
    assert "rotated-secret" not in gateway.log
    assert SECRET not in gateway.log


async def test_with_the_platform_keeping_the_old_secret_a_while_not_one_call_fails(
    start_gateway: StartGateway, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    gateway = await start_gateway(file_config(tmp_path, secret_file))
    stream = Stream(session, gateway.url)
    callers = [asyncio.ensure_future(stream.caller()) for _ in range(8)]
    try:
        await stream.more(30)
        # As a platform console does: the new secret, the old one still accepted a while.
        await rotate_platform(session, gateway, "rotated-secret", keep_previous_s="300")
        secret_file.write_text("rotated-secret\n")
        await gateway.wait_for_log(TAKEN)
        await stream.more(50)
        # The old one retired: what is signed now is signed with the new one.
        await rotate_platform(session, gateway, "rotated-secret", keep_previous_s="0")
        await stream.more(50)
    finally:
        stream.stop.set()
        await asyncio.gather(*callers)
    assert stream.errors == []
    assert {(a.http_status, a.platform_status) for a in stream.answers} == {(200, 200)}


async def test_an_empty_file_is_refused_and_the_secret_in_force_kept(
    start_gateway: StartGateway, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    gateway = await start_gateway(file_config(tmp_path, secret_file))
    secret_file.write_text("\n")
    refusal = f"apps.demo.secret_file: {secret_file} is empty; the secret in force stays"
    await gateway.wait_for_log(refusal)
    stream = Stream(session, gateway.url)
    await asyncio.gather(stream.caller(), stop_after(stream, 20))
    assert {(a.http_status, a.platform_status) for a in stream.answers} == {(200, 200)}
    # Many readings later, still one warning.
    assert sum(refusal in line for line in gateway.log_lines) == 1
    secret_file.write_text("good-again\n")
    await rotate_platform(session, gateway, "good-again", keep_previous_s="0")
    await gateway.wait_for_log(TAKEN)
    stream = Stream(session, gateway.url)
    await asyncio.gather(stream.caller(), stop_after(stream, 5))
    assert {(a.http_status, a.platform_status) for a in stream.answers} == {(200, 200)}


async def stop_after(stream: Stream, count: int) -> None:
    await stream.more(count)
    stream.stop.set()


async def test_every_worker_takes_a_new_secret_and_a_new_caller_token(
    start_gateway: StartGateway,
    tmp_path: Path,
    session: aiohttp.ClientSession,
    redis_server: RedisServer,
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    token_file = tmp_path / "token"
    token_file.write_text("first-token-0123456789abcdef")
    config = file_config(
        tmp_path,
        secret_file,
        cache=f"{{backend: redis, url: '{redis_server.url}'}}",
        shutdown="{drain_s: 0}",
        callers="{orders: {token_file: " + str(token_file) + ", apps: [demo], "
        "allow: ['* /neuopenapi/*']}}",
    )
    gateway = await start_gateway(config, extra_args=("--workers", "2"))
    await rotate_platform(session, gateway, "rotated-secret", keep_previous_s="0")
    secret_file.write_text("rotated-secret\n")
    token_file.write_text("second-token-0123456789abcdef\n")
    # The supervisor reads the files once, and each worker puts them in force.
    await gateway.wait_for_count(TAKEN, 2)
    await gateway.wait_for_count("callers.orders.token_file", 3)
    assert sum("handing the new" in line for line in gateway.log_lines) == 2
    served_by: set[str] = set()
    for _ in range(40):
        # A new connection each time, so the kernel may hand it to either worker.
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh,
            fresh.post(
                gateway.url + ECHO,
                data={"x": "1"},
                headers={"Authorization": "Bearer second-token-0123456789abcdef"},
            ) as response,
        ):
            body: Any = await response.json()
            assert (response.status, body["responseHeader"]["status"]) == (200, 200)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh,
            fresh.post(
                gateway.url + ECHO,
                data={"x": "1"},
                headers={"Authorization": "Bearer first-token-0123456789abcdef"},
            ) as response,
        ):
            assert response.status == 401, "the old token is no more"
        await gateway.wait_for_count(f"path={ECHO} ", 2 * (_ + 1))
        served_by = {
            line.split("worker=")[1].split()[0]
            for line in gateway.log_lines
            if f"path={ECHO} " in line and "status=200" in line
        }
        if len(served_by) == 2:
            break
    assert served_by == {"0", "1"}


async def test_reload_says_a_secret_from_the_environment_is_kept(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    config = write_config(tmp_path, pid_file=str(tmp_path / "gateway.pid"))
    gateway = await start_gateway(config)
    reload = await asyncio.create_subprocess_exec(
        *GATEWAY_COMMAND,
        "reload",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # The operator's new value, exported in the shell: the gateway cannot see it.
        env={**os.environ, "NEU_SECRET_DEMO": "exported-in-the-shell"},
    )
    stdout, stderr = await reload.communicate()
    assert reload.returncode == 0
    warning = (
        "apps.demo.secret_env: a running gateway keeps the value NEU_SECRET_DEMO had when it "
        "started (a reload cannot see a changed environment); to rotate this secret, use "
        "secret_file, which is watched and taken without a restart, or restart the gateway"
    )
    assert stderr.decode() == f"neu-gateway: warning: {warning}\n"
    assert stdout.decode().startswith(f"sent SIGHUP to {gateway.process.pid}")
    await gateway.wait_for_log("config reloaded from")
    await gateway.wait_for_log(warning)
