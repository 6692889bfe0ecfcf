from __future__ import annotations

import compileall
import contextlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from gateway.config.load import from_mapping
from gateway.config.model import Config
from gateway.http.keys import CONFIG
from gateway.http.server import GuardedRunner
from gateway.runtime.app import create_app
from gateway.runtime.listeners import connection_limits
from tests.support.pki import Pki, make_pki
from tests.support.platform_double import APPID, SECRET, PlatformDouble

pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.redis_ha",
    "tests.support.receiver",
    "tests.support.processes",
]


def pytest_configure(config: pytest.Config) -> None:
    # Hundreds of tests run the gateway as a process, and each imports its ~130 modules anew:
    # where bytecode is never written (PYTHONDONTWRITEBYTECODE, as on CI), each process would
    # compile them all again, about 0.15 s of CPU. Compiled once here (by the controller, not
    # each xdist worker), they are read, as an installed package's are.
    if not hasattr(config, "workerinput"):
        with contextlib.suppress(OSError):  # a read-only tree: the processes compile, as ever
            compileall.compile_dir(Path(__file__).parent.parent / "gateway", quiet=1)
    # pytest keeps each test module, its asserts rewritten, as bytecode beside it (and the
    # modules of the plugins whose asserts it rewrites, Hypothesis's), unless none is written:
    # then every pytest process (each xdist worker, then the `alone` run) rewrites and compiles
    # them all anew, about 5 s of CPU. Written once, the next process reads them.
    sys.dont_write_bytecode = False
    # Imported only now, so that its modules are written too.
    from hypothesis import settings

    # Hypothesis's per-example deadline measures the machine, not the code: on a loaded CI
    # runner (every core busy with the suite's other workers) a 200 ms deadline fails correct
    # tests.
    settings.register_profile("neu-gateway", deadline=None)
    settings.load_profile("neu-gateway")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The tests marked `long` go first (each module's order kept): xdist's worksteal hands a
    # worker that runs out of tests some that have not started, so one of these reached near
    # the end of a worker's share would run alone while the others had finished (a failover
    # test of a minute started 208 s into a 284 s run).
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


GatewayFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


class GuardedTestServer(TestServer):
    """A TestServer whose connections go through the gateway's own listener, as in `serve`."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GuardedRunner(self.app, connection_limits(self.app[CONFIG]), **kwargs)


def guarded(app: web.Application) -> TestServer:
    """The gateway app served as `neu-gateway serve` serves it, for aiohttp_client."""
    return GuardedTestServer(app)


def gateway_config(upstream: str, **overrides: Any) -> Config:
    document: dict[str, Any] = {
        "apps": {"demo": {"appid": APPID, "secret_env": "DEMO_SECRET", "upstream": upstream}},
        "timeouts": {"connect_s": 2, "total_s": 5},
    }
    document.update(overrides)
    return from_mapping(document, {"DEMO_SECRET": SECRET})


@pytest.fixture
def platform() -> PlatformDouble:
    return PlatformDouble()


@pytest.fixture
async def platform_server(aiohttp_server: Any, platform: PlatformDouble) -> TestServer:
    # A gateway still open when the double stops (fixtures end in reverse order) may hold a
    # connection it has not yet sent on (its clock probe at start): a stop waits for that
    # connection's request up to shutdown_timeout, and the gateway's own timeout ends it at 5 s.
    server: TestServer = await aiohttp_server(platform.app(), shutdown_timeout=0.1)
    return server


@pytest.fixture
def platform_url(platform_server: TestServer) -> str:
    return str(platform_server.make_url("")).rstrip("/")


@pytest.fixture
def make_gateway(aiohttp_client: Any, platform_url: str) -> GatewayFactory:
    """A real gateway on a loopback port, pointed at the platform double unless told otherwise."""

    async def make(upstream: str | None = None, **overrides: Any) -> TestClient[Any, Any]:
        config = gateway_config(upstream or platform_url, **overrides)
        client: TestClient[Any, Any] = await aiohttp_client(guarded(create_app(config)))
        return client

    return make


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> TestClient[Any, Any]:
    return await make_gateway()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA of the test's own, a server certificate for platform.test and 127.0.0.1, a client
    certificate, and an unrelated CA."""
    return make_pki(tmp_path_factory.mktemp("pki"))
