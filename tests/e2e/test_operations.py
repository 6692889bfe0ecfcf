"""What an operator relies on, against `neu-gateway serve` as a process with the sandbox as
upstream: /metrics, /readyz, JSON logs, SIGHUP reload, the SIGTERM drain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.core import signing
from tests.support.paths import DETAIL, TOKEN, USER_INFO
from tests.support.paths import SANDBOX_ECHO as ECHO
from tests.support.platform_double import APPID, SECRET
from tests.support.processes import (
    GATEWAY_COMMAND,
    GatewayProcess,
    StartCommand,
    StartGateway,
    hang_at_sandbox,
    until_held,
    write_config,
)
from tests.support.rawhttp import raw_request
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e
# Deadlines of stops and drains, and a reload under load, are measured: those run alone, not
# beside other tests on the same cores. The rest count, read logs and answers, and time nothing.
ALONE = pytest.mark.alone


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def get_json(
    session: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with session.get(url, **kwargs) as response:
        return response.status, await response.json()


async def post_json(
    session: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with session.post(url, **kwargs) as response:
        return response.status, await response.json()


async def login(session: aiohttp.ClientSession, gateway: GatewayProcess, user: str) -> Any:
    _, body = await post_json(session, gateway.sandbox_url + "/sandbox/login", data={"user": user})
    return body["response"]


async def exchange(session: aiohttp.ClientSession, gateway: GatewayProcess, code: str) -> Any:
    form = {"code": code, "grantType": "authorization_code", "scope": "user.info"}
    return await post_json(session, gateway.url + TOKEN, data=form)


async def scrape(
    session: aiohttp.ClientSession, url: str
) -> dict[tuple[str, frozenset[Any]], float]:
    async with session.get(url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_what_happened(
    start_gateway: StartGateway, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    config = write_config(
        tmp_path,
        app_callbacks="{verify_sign: true}",
        callbacks=f"{{listen: {{port: 0}}, store: 'sqlite://{tmp_path}/outbox.db'}}",
    )
    gateway = await start_gateway(config)
    user = await login(session, gateway, "13800138000")
    assert (await exchange(session, gateway, user["code"]))[0] == 200
    assert (await exchange(session, gateway, user["code"]))[0] == 200  # the same code: cached
    status, _ = await get_json(session, gateway.url + USER_INFO, params={"openId": user["openId"]})
    assert status == 200
    # An unknown trade: HTTP 200 from the platform, with its own status 404 in the envelope.
    status, body = await get_json(session, gateway.url + DETAIL, params={"tradeNo": "nope"})
    assert (status, body["responseHeader"]["status"]) == (200, 404)
    # Paths a caller made up are all one route, `other`.
    for index in range(3):
        await get_json(session, gateway.url + f"/neuopenapi/made/up{index}")
    callbacks_url = gateway.callbacks_url
    status, _ = await post_json(
        session, callbacks_url + "/callbacks/demo/pay", data={"tradeNo": "T", "sign": "forged"}
    )
    assert status in (400, 401)

    samples = await scrape(session, gateway.url)
    requests = "neu_gateway_requests_total"
    common = {"app": "demo", "caller": "anonymous"}
    assert value(samples, requests, **common, route=TOKEN, method="POST", status="200") == 2
    assert value(samples, requests, **common, route=USER_INFO, method="GET", status="200") == 1
    assert value(samples, requests, **common, route=DETAIL, method="GET", status="200") == 1
    made_up = {
        labels for name, labels in samples if name == requests and ("route", "other") in labels
    }
    assert sum(samples[(requests, labels)] for labels in made_up) == 3
    assert not any("made" in str(labels) for _, labels in samples), "raw paths never become labels"
    upstream = "neu_gateway_upstream_requests_total"
    assert (
        value(samples, upstream, app="demo", route=TOKEN, status="200", platform_status="200") == 1
    )
    assert (
        value(samples, upstream, app="demo", route=DETAIL, status="200", platform_status="404") == 1
    )
    cache = "neu_gateway_token_cache_total"
    assert value(samples, cache, app="demo", result="miss") == 1
    assert value(samples, cache, app="demo", result="hit") == 2  # the code again, and by openId
    assert value(samples, "neu_gateway_token_cache_entries") == 1
    refused = {
        dict(labels)["outcome"]
        for name, labels in samples
        if name == "neu_gateway_callbacks_total" and samples[(name, labels)] == 1
    }
    assert refused
    assert "accepted" not in refused
    assert value(samples, "neu_gateway_outbox_deliveries", state="pending") == 0
    assert value(samples, "neu_gateway_config_reloads_total", result="failed") == 0
    assert value(samples, "neu_gateway_config_loaded_timestamp_seconds") > time.time() - 60
    assert any(name == "neu_gateway_build_info" for name, _ in samples)
    assert (
        value(samples, "neu_gateway_request_duration_seconds_count", app="demo", route=TOKEN) == 2
    )
    assert (
        value(samples, "neu_gateway_upstream_duration_seconds_count", app="demo", route=TOKEN) == 1
    )
    # The process itself, single: no pid label.
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0
    # This scrape's own connection, on the callers' listener.
    assert value(samples, "neu_gateway_connections", listener="egress") >= 1
    # Probes and scrapes are not traffic.
    assert not any(name == requests and ("route", "/metrics") in labels for name, labels in samples)


async def test_admin_listen_moves_the_admin_endpoints(
    start_gateway: StartGateway, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(write_config(tmp_path, admin="{listen: {port: 0}}"))
    admin_url = gateway.log.split("admin listening on ")[1].split()[0]
    for path in ("/healthz", "/readyz"):
        assert (await get_json(session, admin_url + path))[0] == 200
        status, body = await get_json(session, gateway.url + path)
        assert (status, body["error"]) == (404, "not_found")
    await scrape(session, admin_url)


async def test_redis_down_leaves_readyz_200_and_says_so_in_its_checks_and_metrics(
    start_gateway: StartGateway,
    tmp_path: Path,
    session: aiohttp.ClientSession,
    redis_server: RedisServer,
) -> None:
    config = write_config(tmp_path, cache=f"{{backend: redis, url: '{redis_server.url}'}}")
    gateway = await start_gateway(config)
    status, body = await get_json(session, gateway.url + "/readyz")
    assert (status, body["response"]["checks"]["cache"]) == (200, "ok")
    assert value(await scrape(session, gateway.url), "neu_gateway_backend_up", backend="cache") == 1
    await redis_server.stop()
    status, body = await get_json(session, gateway.url + "/readyz")
    assert status == 200, "a shared Redis down must not take every replica out"
    assert body["response"]["checks"]["cache"].startswith("unavailable (")
    assert value(await scrape(session, gateway.url), "neu_gateway_backend_up", backend="cache") == 0
    # Calls still work: a token is fetched from the platform again.
    user = await login(session, gateway, "alice")
    assert (await exchange(session, gateway, user["code"]))[0] == 200
    await redis_server.start()
    assert (await get_json(session, gateway.url + "/readyz"))[0] == 200
    assert value(await scrape(session, gateway.url), "neu_gateway_backend_up", backend="cache") == 1


async def test_ready_requires_cache_makes_readyz_unready_while_redis_is_down(
    start_gateway: StartGateway,
    tmp_path: Path,
    session: aiohttp.ClientSession,
    redis_server: RedisServer,
) -> None:
    config = write_config(
        tmp_path,
        cache=f"{{backend: redis, url: '{redis_server.url}'}}",
        admin="{ready_requires: [cache]}",
    )
    gateway = await start_gateway(config)
    assert (await get_json(session, gateway.url + "/readyz"))[0] == 200
    await redis_server.stop()
    status, body = await get_json(session, gateway.url + "/readyz")
    assert (status, body["error"]) == (503, "not_ready")
    assert body["responseHeader"]["msg"].startswith("not ready: cache: unavailable (")
    assert (await get_json(session, gateway.url + "/healthz"))[0] == 200, "alive all the same"
    await redis_server.start()
    assert (await get_json(session, gateway.url + "/readyz"))[0] == 200


async def test_json_logs_carry_the_access_fields_and_no_secret(
    start_command: StartCommand, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path)
    # The last --log-format given wins: the tests' own default is text.
    gateway = await start_command("--log-format", "json", "serve", "-c", str(config))
    user = await login(session, gateway, "alice")
    status, body = await exchange(session, gateway, user["code"])
    assert status == 200
    token = body["response"]["accessToken"]
    await get_json(session, gateway.url + USER_INFO, params={"accessToken": token})
    await gateway.wait_for_count('"route": "' + USER_INFO, 1)
    records = [json.loads(line) for line in gateway.log_lines]
    assert all({"time", "level", "logger"} <= record.keys() for record in records)
    [access] = [r for r in records if r.get("route") == TOKEN]
    assert (
        access
        | {
            "app": "demo",
            "caller": "anonymous",
            "method": "POST",
            "status": 200,
            "upstream_status": "200",
            "platform_status": "200",
        }
        == access
    )
    for key in ("request_id", "duration_ms", "upstream_ms", "bytes_in", "bytes_out"):
        assert key in access
    assert access["bytes_out"] > 0
    assert access["bytes_in"] > 0
    for credential in (SECRET, token, user["code"]):
        assert credential not in gateway.log


async def test_refusals_log_the_bytes_they_answered(
    start_command: StartCommand, tmp_path: Path
) -> None:
    """Refused by the listener (431), and before the body is read (413 at Expect:
    100-continue): each access line counts the error it sent."""
    config = write_config(tmp_path)
    gateway = await start_command("--log-format", "json", "serve", "-c", str(config))
    port = int(gateway.url.rsplit(":", 1)[1])
    asks = {
        431: b"GET " + USER_INFO.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Big: " + b"x" * 70_000,
        413: b"POST " + TOKEN.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 999999999999\r\nExpect: 100-continue",
    }
    for expected, head in asks.items():
        status, body = await raw_request(port, head)
        assert status == expected
        # The envelope as the gateway renders it, key for key.
        sent = len(json.dumps(body, ensure_ascii=False).encode())
        await gateway.wait_for_count(f'"status": {expected}', 1)
        [access] = [
            record
            for record in map(json.loads, gateway.log_lines)
            if record.get("status") == expected and "bytes_out" in record
        ]
        assert access["bytes_out"] == sent


# Reload


def signed_echo(secret: str) -> dict[str, str]:
    fields = {"appid": APPID, "timestamp": str(time.time_ns() // 1_000_000), "x": "1"}
    fields["sign"] = signing.sign(fields, secret)
    return fields


@ALONE
async def test_sighup_rotates_the_secret_under_load_without_failing_a_request(
    start_gateway: StartGateway, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    # Not watched: the reload is what takes the new secret.
    config = write_config(tmp_path, pid_file=str(tmp_path / "gateway.pid"), secrets="{watch_s: 0}")
    config.write_text(
        config.read_text().replace("secret_env: NEU_SECRET_DEMO", f"secret_file: {secret_file}")
    )
    gateway = await start_gateway(config)
    failures: list[Any] = []
    answered = 0
    progress = asyncio.Condition()
    stop = asyncio.Event()

    async def caller() -> None:
        nonlocal answered
        while not stop.is_set():
            status, body = await post_json(session, gateway.url + ECHO, data={"x": "1"})
            if status != 200:
                failures.append(body)
            async with progress:
                answered += 1
                progress.notify_all()

    async def answers(count: int) -> None:
        target = answered + count
        async with progress:
            await progress.wait_for(lambda: answered >= target)

    callers = [asyncio.ensure_future(caller()) for _ in range(8)]
    try:
        # The platform is told first, and accepts both secrets for a while.
        rotate = f"{gateway.sandbox_url}/sandbox/apps/{APPID}/secret"
        assert (await post_json(session, rotate, data={"secret": "rotated-secret"}))[0] == 200
        secret_file.write_text("rotated-secret\n")
        gateway.process.send_signal(signal.SIGHUP)
        await gateway.wait_for_log("config reloaded from")
        # Now the old secret is refused: what still succeeds is signed with the new one.
        retire = {"secret": "rotated-secret", "keep_previous_s": "0"}
        assert (await post_json(session, rotate, data=retire))[0] == 200
        await answers(50)
        assert failures == []
        sandbox_echo = gateway.sandbox_url + ECHO
        assert (await post_json(session, sandbox_echo, data=signed_echo("rotated-secret")))[1][
            "responseHeader"
        ]["status"] == 200
        assert (await post_json(session, sandbox_echo, data=signed_echo(SECRET)))[1][
            "responseHeader"
        ]["status"] == 401

        # An invalid config: refused, and the running one keeps serving.
        config.write_text(config.read_text() + "limits: {max_params: -1}\n")
        reload = await asyncio.create_subprocess_exec(
            *GATEWAY_COMMAND, "reload", "-c", str(config), stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await reload.communicate()
        assert reload.returncode == 2, "reload validates before it signals"
        assert b"limits.max_params" in stderr
        gateway.process.send_signal(signal.SIGHUP)
        await gateway.wait_for_log("config reload refused")
        await answers(20)
        assert failures == []
    finally:
        stop.set()
        await asyncio.gather(*callers)
    samples = await scrape(session, gateway.url)
    assert value(samples, "neu_gateway_config_reloads_total", result="failed") == 1
    assert value(samples, "neu_gateway_config_reloads_total", result="ok") == 1
    assert SECRET not in gateway.log
    assert "rotated-secret" not in gateway.log


async def test_reload_names_what_needs_a_restart(
    start_gateway: StartGateway, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    pid_file = tmp_path / "gateway.pid"
    config = write_config(tmp_path, pid_file=str(pid_file))
    gateway = await start_gateway(config)
    assert int(pid_file.read_text()) == gateway.process.pid
    config.write_text(
        config.read_text().replace("listen: {host: 127.0.0.1, port: 0}", "listen: {port: 1}")
        + "limits: {max_params: 3}\n"
    )
    reload = await asyncio.create_subprocess_exec(
        *GATEWAY_COMMAND,
        "reload",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "NEU_SECRET_DEMO": SECRET},
    )
    stdout, _ = await reload.communicate()
    assert reload.returncode == 0
    assert str(gateway.process.pid).encode() in stdout
    await gateway.wait_for_log("kept until a restart: listen")
    # What can change did: four parameters are now too many.
    status, body = await post_json(session, gateway.url + ECHO, data=dict.fromkeys("abcd", "1"))
    assert (status, body["error"]) == (400, "invalid_params")


# Drain


@ALONE
async def test_sigterm_drains_and_answers_every_request_in_flight(
    start_gateway: StartGateway, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path, shutdown="{drain_s: 1, timeout_s: 20}")
    gateway = await start_gateway(config)
    await hang_at_sandbox(session, gateway, ECHO)
    in_flight = [
        asyncio.ensure_future(post_json(session, gateway.url + ECHO, data={"n": str(n)}))
        for n in range(50)
    ]
    await until_held(session, gateway, 50)
    started = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    await gateway.wait_for_log("draining")
    status, body = await get_json(session, gateway.url + "/readyz")
    assert (status, body["error"]) == (503, "not_ready")
    assert "draining" in body["responseHeader"]["msg"]
    # Still served during the drain: load balancers may not have noticed yet.
    assert (await get_json(session, gateway.url + "/healthz"))[0] == 200
    async with session.delete(gateway.sandbox_url + "/sandbox/faults") as released:
        assert released.status == 200
    results = await asyncio.gather(*in_flight)
    assert [status for status, _ in results] == [200] * 50
    assert await asyncio.wait_for(gateway.process.wait(), 20) == 0
    assert time.monotonic() - started < 20


async def test_a_reload_that_would_need_a_restart_or_cannot_be_read_is_refused(
    start_gateway: StartGateway, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path)
    good = config.read_text()
    gateway = await start_gateway(config)
    # A new app on the embedded sandbox, which knows only the apps it started with.
    config.write_text(
        good.replace(
            "apps:\n",
            "apps:\n  other:\n    appid: other-appid\n    secret: other-secret-0123\n"
            "    upstream: sandbox\n",
        )
        + "default_app: demo\n"
    )
    gateway.process.send_signal(signal.SIGHUP)
    await gateway.wait_for_log("apps.other: a new app on the embedded sandbox needs a restart")
    # Not UTF-8, with a new secret inline: refused, and the secret never reaches the log.
    config.write_bytes(good.encode() + b"# caf\xe9\n" + b"# brand-new-secret-value-42\n")
    gateway.process.send_signal(signal.SIGHUP)
    await gateway.wait_for_log("not UTF-8 text")
    assert "brand-new-secret-value-42" not in gateway.log
    status, body = await post_json(
        session, gateway.url + ECHO, data={"x": "1"}, headers={"X-Neu-App": "other"}
    )
    assert (status, body["error"]) == (404, "unknown_app"), "the running config stayed"
    samples = await scrape(session, gateway.url)
    assert value(samples, "neu_gateway_config_reloads_total", result="failed") == 2


async def test_reload_refuses_a_stale_pid_file(tmp_path: Path) -> None:
    stranger = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        pid_file = tmp_path / "gateway.pid"
        pid_file.write_text(f"{stranger.pid}\n")
        config = write_config(tmp_path, pid_file=str(pid_file))
        reload = await asyncio.create_subprocess_exec(
            *GATEWAY_COMMAND, "reload", "-c", str(config),
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "NEU_SECRET_DEMO": SECRET},
        )  # fmt: skip
        _, stderr = await reload.communicate()
        assert reload.returncode == 1
        assert b"not a running neu-gateway" in stderr
        assert stranger.returncode is None, "the stranger was left alone"
    finally:
        stranger.kill()
        await stranger.wait()


@ALONE
async def test_a_stop_keeps_to_its_deadline_and_to_exit_0_whatever_signals_follow(
    start_gateway: StartGateway, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    config = write_config(tmp_path, shutdown="{drain_s: 0.5, timeout_s: 2}")
    gateway = await start_gateway(config)
    await hang_at_sandbox(session, gateway, ECHO)
    stuck = asyncio.ensure_future(post_json(session, gateway.url + ECHO, data={"x": "1"}))
    await until_held(session, gateway, 1)
    started = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    await gateway.wait_for_log("stopping")
    for _ in range(20):
        gateway.process.send_signal(signal.SIGHUP)
    assert await asyncio.wait_for(gateway.process.wait(), 20) == 0
    # drain_s + timeout_s and the slack, not aiohttp's own 60 s for the held request.
    assert time.monotonic() - started < 0.5 + 2 + 2
    with contextlib.suppress(aiohttp.ClientError):
        await stuck
