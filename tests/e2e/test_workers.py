"""`--workers 2`: two processes on one port, one supervisor, state shared through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.paths import DETAIL, TOKEN, TRADE
from tests.support.paths import SANDBOX_ECHO as ECHO
from tests.support.platform_double import APPID, SECRET
from tests.support.processes import (
    GATEWAY_COMMAND,
    GatewayProcess,
    StartCommand,
    StartGateway,
    hang_at_sandbox,
    neu_gateway,
    until_held,
    write_config,
)
from tests.support.redis_server import RedisServer

# Deadlines of stops and drains are measured, and every test but one runs three processes or
# more: alone, not beside other tests on the same cores.
pytestmark = pytest.mark.e2e
ALONE = pytest.mark.alone

_WORKER = re.compile(r"worker=(\d+)")


def redis_config(tmp_path: Path, redis_server: RedisServer, **extra: str) -> Path:
    settings = {
        "cache": f"{{backend: redis, url: '{redis_server.url}'}}",
        "callbacks": "{listen: {port: 0}}",
        "shutdown": "{drain_s: 0}",
        **extra,
    }
    return write_config(tmp_path, **settings)


def worker_pids(gateway: GatewayProcess) -> list[int]:
    pid = gateway.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in children.split()]


async def fresh_connection_post(url: str, data: dict[str, str]) -> tuple[int, Any, str]:
    # A new connection each time, so the kernel may hand it to either worker.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.post(url, data=data) as response,
    ):
        return response.status, await response.json(), response.headers.get("X-Neu-Cache", "")


@ALONE
async def test_two_workers_both_serve_and_a_code_is_exchanged_once(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    gateway = await start_gateway(
        redis_config(tmp_path, redis_server), extra_args=("--workers", "2")
    )
    assert "(2 workers, " in gateway.log
    status, login, _ = await fresh_connection_post(
        gateway.sandbox_url + "/sandbox/login", {"user": "13800138000"}
    )
    assert status == 200
    form = {
        "code": login["response"]["code"],
        "grantType": "authorization_code",
        "scope": "user.info",
    }
    answers = await asyncio.gather(
        *(fresh_connection_post(gateway.url + TOKEN, form) for _ in range(40))
    )
    assert {status for status, _, _ in answers} == {200}
    tokens = {body["response"]["accessToken"] for _, body, _ in answers}
    assert len(tokens) == 1, "one exchange, one token, whichever worker answered"
    assert [cache for _, _, cache in answers].count("miss") == 1
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway.sandbox_url + "/sandbox/stats") as response,
    ):
        assert (await response.json())["response"]["calls"][TOKEN] == 1
    await gateway.wait_for_count(f"route={TOKEN} status=200", 40)
    workers = {int(match) for match in _WORKER.findall(gateway.log)}
    assert workers == {0, 1}, "both workers served"
    # Whichever worker a scrape reaches, it counts the requests of both.
    for _ in range(4):
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
            session.get(gateway.url + "/metrics") as response,
        ):
            text = await response.text()
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("neu_gateway_requests_total{") and f'route="{TOKEN}"' in line
        )
        assert counted == 40


@ALONE
async def test_a_worker_that_dies_is_started_again(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    gateway = await start_gateway(
        redis_config(tmp_path, redis_server), extra_args=("--workers", "2")
    )
    pids = worker_pids(gateway)
    assert len(pids) == 2
    os.kill(pids[0], signal.SIGKILL)
    await gateway.wait_for_log("starting it again")
    # The sandbox, two callbacks listeners, two workers, the supervisor; then the new worker
    # and its callbacks listener.
    await gateway.wait_for_count("listening", 6 + 2)
    status, _, _ = await fresh_connection_post(
        gateway.sandbox_url + "/sandbox/login", {"user": "x"}
    )
    assert status == 200
    gateway.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(gateway.process.wait(), 20) == 0


async def test_several_workers_need_redis(tmp_path: Path) -> None:
    result = await neu_gateway(
        "serve", "--workers", "2", "-c", str(write_config(tmp_path)),
        env={"NEU_SECRET_DEMO": "demo-secret"},
    )  # fmt: skip
    assert result.status == 2
    assert "needs cache.backend: redis" in result.stderr


@ALONE
async def test_workers_end_with_their_supervisor_even_killed(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    gateway = await start_gateway(
        redis_config(tmp_path, redis_server), extra_args=("--workers", "2")
    )
    pids = worker_pids(gateway)
    gateway.process.kill()
    await gateway.process.wait()
    for _ in range(500):
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):  # noqa: ASYNC240
            return
        await asyncio.sleep(0.02)  # wait-ok: polls until the orphans are gone
    raise AssertionError("workers outlived their supervisor")


@ALONE
async def test_a_sighup_while_workers_start_harms_none(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = redis_config(tmp_path, redis_server)
    process = await asyncio.create_subprocess_exec(
        *GATEWAY_COMMAND, "--log-format", "text", "serve", "--workers", "2", "-c", str(config),
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "NEU_SECRET_DEMO": SECRET},
    )  # fmt: skip
    assert process.stderr is not None
    # From its first line on, the program is running: before that, not even Python is.
    log = await asyncio.wait_for(process.stderr.readline(), 20)
    while b"(2 workers, " not in log:
        process.send_signal(signal.SIGHUP)
        line = await asyncio.wait_for(process.stderr.readline(), 20)
        assert line, log.decode()
        log += line
    process.send_signal(signal.SIGTERM)
    rest = await asyncio.wait_for(process.stderr.read(), 20)
    assert await process.wait() == 0, (log + rest).decode()
    assert b"before it listened" not in log + rest


@ALONE
async def test_a_reload_of_the_same_file_names_no_change_in_any_worker(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    """Each worker runs the file with its own ports, no pid_file and the command line's
    --workers: a reload compares the file made the same, not the file as it is."""
    config = redis_config(tmp_path, redis_server, pid_file=str(tmp_path / "gateway.pid"))
    gateway = await start_gateway(config, extra_args=("--workers", "2"))
    gateway.process.send_signal(signal.SIGHUP)
    await gateway.wait_for_count("config reloaded from", 2)
    assert "kept until a restart" not in gateway.log
    # Every line of a worker's says which worker it is, not only its access lines.
    reloaded = [line for line in gateway.log_lines if "config reloaded from" in line]
    assert {int(match) for line in reloaded for match in _WORKER.findall(line)} == {0, 1}


@ALONE
async def test_a_stop_with_a_request_held_at_the_shared_sandbox_keeps_to_its_deadline(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    """The supervisor runs the embedded sandbox for all workers: a request held there must
    not keep the stop waiting for aiohttp's own 60 s."""
    config = redis_config(tmp_path, redis_server, shutdown="{drain_s: 0, timeout_s: 1}")
    gateway = await start_gateway(config, extra_args=("--workers", "2"))
    async with aiohttp.ClientSession() as session:
        await hang_at_sandbox(session, gateway, ECHO)
        stuck = asyncio.ensure_future(session.post(gateway.url + ECHO, data={"x": "1"}))
        await until_held(session, gateway, 1)
        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gateway.process.wait(), 30) == 0
        # timeout_s for the workers, then the sandbox's own second, and the slack.
        assert time.monotonic() - started < 1 + 1 + 3
        with contextlib.suppress(aiohttp.ClientError):
            (await stuck).close()


# The config in force, for a worker started again


# The secret files not watched (secrets.watch_s 0): what is written there waits for a reload.
UNWATCHED = "{watch_s: 0}"


def with_secret_file(config: Path, secret: Path) -> Path:
    config.write_text(
        config.read_text().replace("secret_env: NEU_SECRET_DEMO", f"secret_file: {secret}")
    )
    return config


async def kill_a_worker(gateway: GatewayProcess) -> tuple[int, int]:
    """Kills one worker outright; once its replacement listens, returns the worker's index
    and the log line its replacement's lines begin after."""
    listening = sum("listening" in line for line in gateway.log_lines)
    os.kill(worker_pids(gateway)[0], signal.SIGKILL)
    await gateway.wait_for_log("starting it again")
    found = re.search(r"worker (\d+) exited with status", gateway.log)
    assert found is not None
    since = len(gateway.log_lines)
    # The worker and its callbacks listener.
    await gateway.wait_for_count("listening", listening + 2)
    return int(found.group(1)), since


async def echo_until_served_by(
    gateway: GatewayProcess, index: int, since: int, count: int = 10
) -> list[int]:
    """Echo calls on new connections until worker `index` answered `count` of them after log
    line `since` (the kernel spreads connections among the workers); their statuses."""
    statuses: list[int] = []
    for _ in range(30):
        batch = await asyncio.gather(
            *(fresh_connection_post(gateway.url + ECHO, {"n": str(n)}) for n in range(5))
        )
        statuses += [status for status, _, _ in batch]
        await gateway.wait_for_count(f"path={ECHO} ", len(statuses))
        served = sum(
            f"worker={index}" in line and f"path={ECHO} " in line
            for line in gateway.log_lines[since:]
        )
        if served >= count:
            return statuses
    raise AssertionError(f"worker {index} answered {served} of {len(statuses)} calls")


async def sandbox_verdicts(gateway: GatewayProcess) -> list[int]:
    """The status the sandbox gave each echo call it received."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway.sandbox_url + "/sandbox/requests") as response,
    ):
        entries = (await response.json())["response"]["requests"]
    return [entry["status"] for entry in entries if entry["endpoint"] == ECHO]


@ALONE
async def test_a_worker_started_again_signs_with_the_secret_in_force_not_the_file(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("secret-at-the-start\n")
    # Not watched: only a reload would take what is written.
    config = with_secret_file(redis_config(tmp_path, redis_server, secrets=UNWATCHED), secret)
    gateway = await start_gateway(config, extra_args=("--workers", "2"))
    # Written, but no reload: the sandbox, like the platform, knows only the first one.
    secret.write_text("secret-never-reloaded\n")
    index, since = await kill_a_worker(gateway)
    statuses = await echo_until_served_by(gateway, index, since)
    assert set(statuses) == {200}
    assert await sandbox_verdicts(gateway) == [200] * len(statuses)


@ALONE
async def test_a_worker_started_again_runs_while_the_file_on_disk_is_invalid(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    config = redis_config(tmp_path, redis_server)
    gateway = await start_gateway(config, extra_args=("--workers", "2"))
    config.write_text("apps: [not, a, mapping\n")
    gateway.process.send_signal(signal.SIGHUP)
    await gateway.wait_for_count("config reload refused, the running config stays", 2)
    # The refused reload left the first config in force, for a worker started now too.
    index, since = await kill_a_worker(gateway)
    statuses = await echo_until_served_by(gateway, index, since)
    assert set(statuses) == {200}
    assert "status 2" not in gateway.log


@ALONE
async def test_after_a_reload_every_worker_signs_with_its_secret_a_new_one_too(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("secret-at-the-start\n")
    config = with_secret_file(redis_config(tmp_path, redis_server, secrets=UNWATCHED), secret)
    gateway = await start_gateway(config, extra_args=("--workers", "2"))
    secret.write_text("secret-reloaded\n")
    gateway.process.send_signal(signal.SIGHUP)
    await gateway.wait_for_count("config reloaded from", 2)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway.sandbox_url}/sandbox/apps/{APPID}/secret",
            data={"secret": "secret-reloaded", "keep_previous_s": "0"},
        ) as response,
    ):
        # The sandbox took the reloaded secret at the reload; now it accepts that one alone.
        assert response.status == 200
    # Neither the first secret nor one written since the reload.
    secret.write_text("secret-never-reloaded\n")
    index, since = await kill_a_worker(gateway)
    statuses = await echo_until_served_by(gateway, index, since)
    assert set(statuses) == {200}
    assert await sandbox_verdicts(gateway) == [200] * len(statuses)
    served_by = {int(match) for match in _WORKER.findall("\n".join(gateway.log_lines[since:]))}
    assert served_by == {0, 1}


# One drain, however many SIGTERMs


async def processing_trade(gateway: GatewayProcess, session: aiohttp.ClientSession) -> str:
    """A trade the sandbox holds in processing, made through the gateway."""

    async def call(url: str, form: dict[str, str]) -> dict[str, Any]:
        async with session.post(url, data=form) as response:
            body = await response.json()
        assert body["responseHeader"]["status"] == 200, body
        answer: dict[str, Any] = body["response"]
        return answer

    login = await call(gateway.sandbox_url + "/sandbox/login", {"user": "13800138000"})
    form = {"code": login["code"], "grantType": "authorization_code", "scope": "user.info"}
    await call(gateway.url + TOKEN, form)
    trade = await call(
        gateway.url + TRADE,
        {
            "outTradeNo": f"o-{time.time_ns()}",
            "amount": "100",
            "currency": "USD",
            "openId": login["openId"],
            "notifyUrl": "http://127.0.0.1:9/nowhere",
        },
    )
    return str(trade["tradeNo"])


async def fresh_connection_get(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.get(url) as response,
    ):
        await response.read()
        return response.status, response.headers.get("X-Neu-Wait", "")


async def waits_in_flight(
    gateway: GatewayProcess, session: aiohttp.ClientSession, count: int, wait_s: int
) -> list[asyncio.Future[tuple[int, str]]]:
    """`count` tradedetail calls that each wait `wait_s` for a trade that stays in
    processing; returns once the sandbox is being asked about it."""
    trade_no = await processing_trade(gateway, session)
    waits = [
        asyncio.ensure_future(
            fresh_connection_get(f"{gateway.url}{DETAIL}?tradeNo={trade_no}&wait={wait_s}")
        )
        for _ in range(count)
    ]
    for _ in range(500):
        async with session.get(gateway.sandbox_url + "/sandbox/stats") as response:
            if (await response.json())["response"]["calls"].get(DETAIL, 0) >= 1:
                return waits
        await asyncio.sleep(0.01)  # wait-ok: polls the sandbox's count of calls
    raise AssertionError("the waits never reached the sandbox")


@ALONE
async def test_sigterm_again_to_the_supervisor_or_a_worker_does_not_cut_the_drain_short(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    """A supervisor passes its SIGTERM on, and systemd signals every process of a service:
    a worker may get several; one drain, and every request in flight answered."""
    drain_s = 30
    config = redis_config(tmp_path, redis_server, shutdown=f"{{drain_s: {drain_s}, timeout_s: 1}}")
    gateway = await start_gateway(config, extra_args=("--workers", "2"))
    workers = worker_pids(gateway)
    async with aiohttp.ClientSession() as session:
        # Each longer than shutdown.timeout_s: a drain cut short would cancel them.
        waits = await waits_in_flight(gateway, session, 20, wait_s=3)
        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        await gateway.wait_for_count("draining: /readyz answers 503", 2)
        gateway.process.send_signal(signal.SIGTERM)
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        assert await asyncio.gather(*waits) == [(200, "timeout")] * 20
        # Still serving: the drain goes on.
        assert await fresh_connection_get(gateway.url + "/healthz") == (200, "")
        await gateway.wait_for_count("SIGTERM while stopping: ignored", 1 + 2)
        assert "finishing requests in flight" not in gateway.log
        # SIGINT ends the drain, as at a terminal.
        gateway.process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(gateway.process.wait(), 20) == 0
        assert time.monotonic() - started < drain_s


@ALONE
async def test_workers_of_a_killed_supervisor_drain_once_and_answer_what_is_in_flight(
    start_command: StartCommand, tmp_path: Path, redis_server: RedisServer
) -> None:
    """A parent-death signal comes again for each of the supervisor's threads that outlives
    the one that started the worker; the end of the handover pipe comes once."""
    # The platform on its own: it outlives the supervisor, as a real one does.
    platform = await start_command(
        "sandbox", "--port", "0", "--app", f"{APPID}={SECRET}", ready_when="sandbox"
    )
    config = redis_config(
        tmp_path, redis_server, upstream=platform.url, shutdown="{drain_s: 30, timeout_s: 1}"
    )
    gateway = await start_command("serve", "-c", str(config), "--workers", "2")
    gateway.sandbox_url = platform.url
    workers = worker_pids(gateway)
    async with aiohttp.ClientSession() as session:
        waits = await waits_in_flight(gateway, session, 20, wait_s=3)
        gateway.process.kill()
        await gateway.wait_for_count("draining: /readyz answers 503", 2)
        assert await asyncio.gather(*waits) == [(200, "timeout")] * 20
        assert await fresh_connection_get(gateway.url + "/healthz") == (200, "")
    assert "finishing requests in flight" not in gateway.log
    assert gateway.log.count("the supervisor is gone") == 2
    assert "while stopping: ignored" not in gateway.log
    for pid in workers:
        os.kill(pid, signal.SIGINT)
    # (The supervisor's stderr, which the workers share, closes as the last of them ends.)
    assert await asyncio.wait_for(gateway.process.wait(), 20) == -signal.SIGKILL


async def scrape_text(gateway: GatewayProcess) -> str:
    # A new connection each time, so the kernel may hand it to either worker.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.get(gateway.url + "/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


def series(text: str, name: str) -> dict[str, float]:
    """Each series of `name` (its labels as written) -> its value."""
    found = re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)
    return {labels: float(number) for labels, number in found}


@ALONE
async def test_every_worker_is_exported_by_its_pid_whichever_is_scraped(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    gateway = await start_gateway(
        redis_config(tmp_path, redis_server), extra_args=("--workers", "2")
    )
    pids = sorted(worker_pids(gateway))
    expected = {f'{{pid="{pid}"}}' for pid in pids}
    for _ in range(4):
        text = await scrape_text(gateway)
        for name in (
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ):
            found = series(text, name)
            assert found.keys() == expected, name
            assert all(number > 0 for number in found.values()), name
    # A worker killed and started again: the new one in, the dead one out.
    os.kill(pids[0], signal.SIGKILL)
    await gateway.wait_for_log("starting it again")
    await gateway.wait_for_count("listening", 6 + 2)
    now = sorted(worker_pids(gateway))
    assert pids[0] not in now
    text = await scrape_text(gateway)
    assert series(text, "process_resident_memory_bytes").keys() == {
        f'{{pid="{pid}"}}' for pid in now
    }


@ALONE
async def test_requests_in_flight_and_connections_add_up_over_the_workers(
    start_gateway: StartGateway, tmp_path: Path, redis_server: RedisServer
) -> None:
    gateway = await start_gateway(
        redis_config(tmp_path, redis_server), extra_args=("--workers", "2")
    )
    held = 6
    async with aiohttp.ClientSession() as session:
        await hang_at_sandbox(session, gateway, ECHO)
        in_flight = [
            asyncio.ensure_future(fresh_connection_post(gateway.url + ECHO, {"n": str(index)}))
            for index in range(held)
        ]
        await until_held(session, gateway, held)
        # Whichever worker answers the scrape, it sums what both count as it happens.
        for _ in range(4):
            text = await scrape_text(gateway)
            assert sum(series(text, "neu_gateway_requests_in_flight").values()) == held
            # The held requests' connections and the scrape's own.
            egress = series(text, "neu_gateway_connections")['{listener="egress"}']
            assert egress == held + 1
        async with session.delete(gateway.sandbox_url + "/sandbox/faults") as released:
            assert released.status == 200
        assert {status for status, _, _ in await asyncio.gather(*in_flight)} == {200}
    text = await scrape_text(gateway)
    assert sum(series(text, "neu_gateway_requests_in_flight").values()) == 0
    assert series(text, "neu_gateway_connections")['{listener="egress"}'] == 1
