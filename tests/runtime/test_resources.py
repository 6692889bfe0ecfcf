"""What the gateway's app opens as it starts and closes as it stops, each through a real app
on loopback: the embedded sandbox, the upstream client and token cache (their readiness
checks), the callbacks listener and its outbox, the admin listener."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.config.load import from_mapping
from gateway.config.model import Config, Placement
from gateway.egress.keys import BASE_URLS
from gateway.http.keys import METRICS, READINESS
from gateway.runtime.app import create_app
from gateway.runtime.keys import CALLBACKS_URL, EMBEDDED_SANDBOX
from gateway.runtime.listeners import CannotStart, StartError
from gateway.runtime.resources import call_policy, open_outbox, tls_setup_problems
from tests.conftest import gateway_config, guarded
from tests.support.platform_double import APPID
from tests.support.redis_server import RedisServer


async def failed_start(config: Config) -> Exception:
    """What stops the gateway's app starting with `config`."""
    runner = web.AppRunner(create_app(config))
    try:
        await runner.setup()
    except Exception as exc:
        return exc
    finally:
        await runner.cleanup()
    raise AssertionError("it started")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port: int = taken.getsockname()[1]
        yield port


async def test_the_embedded_sandbox_listens_until_the_app_stops(aiohttp_client: Any) -> None:
    config = gateway_config("sandbox", sandbox={"listen": {"port": 0}})
    client = await aiohttp_client(guarded(create_app(config)))
    url = client.app[BASE_URLS]["demo"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    [(_, embedded_url)] = client.app[EMBEDDED_SANDBOX]
    assert embedded_url == url
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/sandbox/") as response:
            assert response.status < 500
        await client.close()
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(url + "/sandbox/")


async def test_a_worker_calls_the_sandbox_its_supervisor_runs(aiohttp_client: Any) -> None:
    shared = "http://127.0.0.1:8090"
    config = replace(gateway_config("sandbox"), placement=Placement(index=1, sandbox_url=shared))
    client = await aiohttp_client(guarded(create_app(config)))
    assert client.app[BASE_URLS]["demo"] == shared
    assert client.app[EMBEDDED_SANDBOX] == []


async def test_a_worker_whose_supervisor_runs_no_sandbox_does_not_start() -> None:
    config = replace(gateway_config("sandbox"), placement=Placement(index=1, sandbox_url=None))
    failure = await failed_start(config)
    assert isinstance(failure, CannotStart)
    assert str(failure) == "sandbox.listen: a worker's supervisor runs no sandbox for it"


async def test_the_sandbox_port_taken_is_named(taken_port: int) -> None:
    config = gateway_config("sandbox", sandbox={"listen": {"port": taken_port}})
    failure = await failed_start(config)
    assert isinstance(failure, StartError)
    assert str(failure).startswith("cannot start: sandbox.listen: cannot listen on")


async def test_readiness_checks_the_upstream_client_and_the_cache(
    aiohttp_client: Any, platform_url: str
) -> None:
    client = await aiohttp_client(guarded(create_app(gateway_config(platform_url))))
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["response"]["checks"] == {"upstream": "ok", "cache": "ok"}


async def test_the_callbacks_listener_serves_with_its_outbox(
    aiohttp_client: Any, platform_url: str, tmp_path: Path
) -> None:
    store = tmp_path / "outbox.db"
    config = gateway_config(
        platform_url, callbacks={"listen": {"port": 0}, "store": f"sqlite://{store}"}
    )
    client = await aiohttp_client(guarded(create_app(config)))
    checks = (await (await client.get("/readyz")).json())["response"]["checks"]
    assert checks["outbox"] == "ok"
    assert store.exists()
    url = client.app[CALLBACKS_URL]
    async with aiohttp.ClientSession() as session:
        # Only the platform's POSTs are served there: the gateway's own routes are not.
        async with session.get(url + "/readyz") as response:
            assert response.status == 404
        async with session.post(url + "/callbacks/demo/pay", data=b"{}") as response:
            assert response.status == 400


async def test_an_outbox_that_cannot_be_opened_stops_the_start(
    platform_url: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = f"sqlite://{blocker}/outbox.db"
    config = gateway_config(platform_url, callbacks={"listen": {"port": 0}, "store": store})
    failure = await failed_start(config)
    assert isinstance(failure, CannotStart)
    assert str(failure).startswith(f"callbacks.store: cannot open {store} (")


async def test_the_callbacks_port_taken_is_named(
    platform_url: str, tmp_path: Path, taken_port: int
) -> None:
    store = tmp_path / "outbox.db"
    config = gateway_config(
        platform_url, callbacks={"listen": {"port": taken_port}, "store": f"sqlite://{store}"}
    )
    failure = await failed_start(config)
    assert isinstance(failure, StartError)
    assert str(failure).startswith("cannot start: callbacks.listen: cannot listen on")


async def test_the_admin_endpoints_move_to_their_own_listener(
    aiohttp_client: Any, platform_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = gateway_config(platform_url, admin={"listen": {"port": 0}})
    with caplog.at_level(logging.INFO, "neu_gateway"):
        client = await aiohttp_client(guarded(create_app(config)))
    [said] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("admin ")]
    found = re.fullmatch(
        r"admin listening on (http://\S+) \(/healthz, /readyz, /metrics, /openapi.json, /docs\)",
        said,
    )
    assert found, said
    for moved in ("/healthz", "/openapi.json", "/docs"):
        assert (await client.get(moved)).status == 404, moved
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
            async with session.get(found[1] + path) as response:
                assert response.status == 200, path


def test_the_call_policy_takes_retries_breaker_clock_and_timeouts_from_the_config() -> None:
    config = gateway_config(
        "https://platform.example",
        retries={"attempts": 4, "backoff_s": 0.5, "max_backoff_s": 8},
        breaker={"failures": 9, "cooldown_s": 12},
        clock={"max_skew_s": 40},
    )
    policy = call_policy(config)
    assert (policy.attempts, policy.backoff_s, policy.max_backoff_s) == (4, 0.5, 8)
    assert (policy.breaker_failures, policy.breaker_cooldown_s) == (9, 12)
    assert policy.max_skew_s == 40
    assert policy.total_s == 5


def test_tls_problems_are_named_once_each_and_in_order(tmp_path: Path) -> None:
    def app(appid: str) -> dict[str, Any]:
        return {
            "appid": appid,
            "secret_env": "S",
            "upstream": "https://platform.example",
            "tls": {"ca_file": str(tmp_path)},  # a directory
        }

    config = from_mapping({"apps": {"zeta": app("z"), "alpha": app(APPID)}}, {"S": "x"})
    problems = tls_setup_problems(config)
    assert [problem.split(":")[0] for problem in problems] == [
        "apps.alpha.tls.ca_file",
        "apps.zeta.tls.ca_file",
    ]
    assert tls_setup_problems(gateway_config("https://platform.example")) == []


async def test_open_outbox_opens_the_sqlite_store_named(tmp_path: Path) -> None:
    store = tmp_path / "deep" / "outbox.db"
    config = gateway_config(
        "https://platform.example", callbacks={"listen": {"port": 0}, "store": f"sqlite://{store}"}
    )
    outbox = open_outbox(config)
    try:
        assert await outbox.counts() == {"pending": 0, "dead": 0}
    finally:
        await outbox.close()
    assert store.exists()


# -- readiness: this process's own, the shared backends reported ------------------------------


async def test_the_app_is_starting_until_every_resource_is_open(platform_url: str) -> None:
    app = create_app(gateway_config(platform_url))
    assert app[READINESS].starting
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert not app[READINESS].starting
    finally:
        await runner.cleanup()


def backend_up(text: str, backend: str) -> float | None:
    found = re.search(rf'^neu_gateway_backend_up\{{backend="{backend}"\}} (\S+)$', text, re.M)
    return None if found is None else float(found[1])


async def readyz(client: Any) -> tuple[int, dict[str, str]]:
    response = await client.get("/readyz")
    return response.status, (await response.json())["response"]["checks"]


def redis_config(platform_url: str, redis: RedisServer, tmp_path: Path, **admin: Any) -> Config:
    return gateway_config(
        platform_url,
        cache={"backend": "redis", "url": redis.url, "timeout_s": 0.5},
        callbacks={"listen": {"port": 0}, "store": "redis"},
        admin=admin,
    )


async def test_redis_down_is_reported_and_exported_but_leaves_the_process_ready(
    aiohttp_client: Any, platform_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    client = await aiohttp_client(
        guarded(create_app(redis_config(platform_url, redis_server, tmp_path)))
    )
    assert await readyz(client) == (200, {"upstream": "ok", "cache": "ok", "outbox": "ok"})
    await redis_server.stop()
    status, checks = await readyz(client)
    assert status == 200
    assert checks["upstream"] == "ok"
    assert checks["cache"].startswith("unavailable (")
    assert checks["outbox"].startswith("unavailable (")
    # A scrape asks again by itself, without a /readyz before it.
    await redis_server.start()
    text = await (await client.get("/metrics")).text()
    assert (backend_up(text, "cache"), backend_up(text, "outbox")) == (1, 1)
    await redis_server.stop()
    text = await (await client.get("/metrics")).text()
    assert (backend_up(text, "cache"), backend_up(text, "outbox")) == (0, 0)
    await redis_server.start()
    assert await readyz(client) == (200, {"upstream": "ok", "cache": "ok", "outbox": "ok"})
    text = await (await client.get("/metrics")).text()
    assert (backend_up(text, "cache"), backend_up(text, "outbox")) == (1, 1)


@pytest.mark.parametrize("required", [["cache"], ["outbox"], ["cache", "outbox"]])
async def test_a_backend_ready_requires_names_makes_it_unready_when_down(
    aiohttp_client: Any,
    platform_url: str,
    redis_server: RedisServer,
    tmp_path: Path,
    required: list[str],
) -> None:
    config = redis_config(platform_url, redis_server, tmp_path, ready_requires=required)
    client = await aiohttp_client(guarded(create_app(config)))
    assert (await readyz(client))[0] == 200
    await redis_server.stop()
    response = await client.get("/readyz")
    body = await response.json()
    assert (response.status, body["error"]) == (503, "not_ready")
    named = body["responseHeader"]["msg"].removeprefix("not ready: ").split("; ")
    assert [problem.split(":")[0] for problem in named] == required
    await redis_server.start()
    assert (await readyz(client))[0] == 200


async def test_a_memory_cache_is_checked_but_not_exported_as_a_backend(
    aiohttp_client: Any, platform_url: str
) -> None:
    client = await aiohttp_client(guarded(create_app(gateway_config(platform_url))))
    assert await readyz(client) == (200, {"upstream": "ok", "cache": "ok"})
    text = await (await client.get("/metrics")).text()
    assert "neu_gateway_backend_up{" not in text


async def test_every_listener_exports_its_open_connections(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = gateway_config(
        "sandbox",
        sandbox={"listen": {"port": 0}},
        admin={"listen": {"port": 0}},
        callbacks={"listen": {"port": 0}, "store": f"sqlite://{tmp_path}/outbox.db"},
    )
    app = create_app(config)
    client = await aiohttp_client(guarded(app))
    [(_, sandbox_url)] = app[EMBEDDED_SANDBOX]
    async with aiohttp.ClientSession() as session:
        async with session.get(sandbox_url + "/sandbox/") as response:
            await response.read()
        async with session.post(app[CALLBACKS_URL] + "/callbacks/demo/pay", data=b"{}") as answer:
            await answer.read()
        text = (await app[METRICS].exposition()).decode()
    assert client.app is app
    opened = dict(re.findall(r'^neu_gateway_connections\{listener="(\w+)"\} (\S+)$', text, re.M))
    # This session keeps one connection to each (the gateway's own client one more to the
    # sandbox, its clock probe's); the callers' listener is told by `serve` (tests/e2e).
    assert opened.keys() == {"sandbox", "callbacks", "admin"}
    assert (opened["callbacks"], opened["admin"]) == ("1.0", "0.0")
    assert float(opened["sandbox"]) >= 1
