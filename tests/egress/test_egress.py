"""Egress as companies run it: an https platform signed by a private CA, mutual TLS, a name
to verify other than the address, and a real forward proxy (tinyproxy) in between."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.runtime.app import create_app
from gateway.runtime.listeners import CannotStart
from gateway.sandbox.server import ECHO_PATH, create_sandbox_app
from tests.conftest import gateway_config, guarded
from tests.support.pki import Pki, server_context
from tests.support.platform_double import APPID, SECRET
from tests.support.ports import free_port

Client = TestClient[Any, Any]


@pytest.fixture
async def https_platform(aiohttp_server: Any, pki: Pki) -> str:
    """The sandbox, served over https with the test CA's certificate."""
    server = await aiohttp_server(create_sandbox_app({APPID: SECRET}), ssl=server_context(pki))
    return f"https://127.0.0.1:{server.port}"


@pytest.fixture
async def mtls_platform(aiohttp_server: Any, pki: Pki) -> str:
    """The sandbox over https, requiring a client certificate from the test CA."""
    context = server_context(pki, require_client=True)
    server = await aiohttp_server(create_sandbox_app({APPID: SECRET}), ssl=context)
    return f"https://127.0.0.1:{server.port}"


async def gateway_for(aiohttp_client: Any, upstream: str, **app: Any) -> Client:
    demo = {"appid": APPID, "secret_env": "DEMO_SECRET", "upstream": upstream, **app}
    config = gateway_config(upstream, apps={"demo": demo})
    client: Client = await aiohttp_client(guarded(create_app(config)))
    return client


async def echo(gateway: Client) -> tuple[int, dict[str, Any]]:
    response = await gateway.post(ECHO_PATH, data={"x": "1"})
    return response.status, await response.json()


async def test_a_private_ca_is_trusted_with_tls_ca_file(
    aiohttp_client: Any, https_platform: str, pki: Pki
) -> None:
    gateway = await gateway_for(aiohttp_client, https_platform, tls={"ca_file": str(pki.ca)})
    status, body = await echo(gateway)
    assert (status, body["responseHeader"]["status"]) == (200, 200)


async def test_without_it_the_certificate_is_refused_as_from_an_unknown_ca(
    aiohttp_client: Any, https_platform: str, pki: Pki
) -> None:
    for tls in ({}, {"ca_file": str(pki.other_ca), "ca_mode": "only"}):
        gateway = await gateway_for(aiohttp_client, https_platform, tls=tls)
        status, body = await echo(gateway)
        assert (status, body["error"]) == (502, "upstream_tls_error")
        assert "unknown CA" in body["responseHeader"]["msg"]
        assert "tls.ca_file" in body["responseHeader"]["msg"]


async def test_a_name_mismatch_is_named_and_tls_server_name_fixes_it(
    aiohttp_client: Any, aiohttp_server: Any, pki: Pki
) -> None:
    server = await aiohttp_server(create_sandbox_app({APPID: SECRET}), ssl=server_context(pki))
    # localhost is not in the certificate; platform.test is.
    upstream = f"https://localhost:{server.port}"
    gateway = await gateway_for(aiohttp_client, upstream, tls={"ca_file": str(pki.ca)})
    status, body = await echo(gateway)
    assert (status, body["error"]) == (502, "upstream_tls_error")
    assert "host name" in body["responseHeader"]["msg"]
    tls = {"ca_file": str(pki.ca), "server_name": "platform.test"}
    gateway = await gateway_for(aiohttp_client, upstream, tls=tls)
    assert (await echo(gateway))[0] == 200


async def test_mutual_tls_with_a_client_certificate(
    aiohttp_client: Any, mtls_platform: str, pki: Pki
) -> None:
    tls: dict[str, str] = {"ca_file": str(pki.ca)}
    gateway = await gateway_for(aiohttp_client, mtls_platform, tls=tls)
    status, body = await echo(gateway)
    # The TLS alert, or (when a reset overtakes it) a dropped connection: either way it says
    # what to set.
    assert status == 502
    assert body["error"] in ("upstream_tls_error", "upstream_unreachable")
    assert "client certificate" in body["responseHeader"]["msg"]
    tls |= {"client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    gateway = await gateway_for(aiohttp_client, mtls_platform, tls=tls)
    status, body = await echo(gateway)
    assert (status, body["responseHeader"]["status"]) == (200, 200)


async def test_an_unreadable_tls_file_stops_the_start_naming_the_option(
    https_platform: str, tmp_path: Path
) -> None:
    demo = {
        "appid": APPID,
        "secret_env": "DEMO_SECRET",
        "upstream": https_platform,
        "tls": {"ca_file": str(tmp_path / "nope.pem")},
    }
    runner = web.AppRunner(create_app(gateway_config(https_platform, apps={"demo": demo})))
    with pytest.raises(CannotStart, match=r"apps\.demo\.tls\.ca_file: cannot use"):
        await runner.setup()
    await runner.cleanup()


async def test_an_unresolvable_host_is_a_dns_error(aiohttp_client: Any) -> None:
    gateway = await gateway_for(aiohttp_client, "https://platform.invalid")
    status, body = await echo(gateway)
    assert (status, body["error"]) == (502, "upstream_dns_error")


# A forward proxy


@dataclass
class Proxy:
    url: str
    log: Path


@pytest.fixture
async def tinyproxy(tmp_path: Path) -> AsyncIterator[Proxy]:
    binary = shutil.which("tinyproxy")
    assert binary is not None, "./scripts/test installs tinyproxy"
    port = free_port()
    log = tmp_path / "tinyproxy.log"
    config = tmp_path / "tinyproxy.conf"
    config.write_text(
        f'Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile "{log}"\nLogLevel Connect\n'
        f'PidFile "{tmp_path / "tinyproxy.pid"}"\nMaxClients 20\nAllow 127.0.0.1\n'
    )
    process = await asyncio.create_subprocess_exec(
        binary, "-d", "-c", str(config), stdout=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.02)  # wait-ok: polls until tinyproxy listens
        yield Proxy(f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        await process.wait()


async def test_a_forward_proxy_carries_the_calls(
    aiohttp_client: Any, https_platform: str, pki: Pki, tinyproxy: Proxy
) -> None:
    gateway = await gateway_for(
        aiohttp_client, https_platform, tls={"ca_file": str(pki.ca)}, proxy=tinyproxy.url
    )
    status, body = await echo(gateway)
    assert (status, body["responseHeader"]["status"]) == (200, 200)
    assert "CONNECT 127.0.0.1:" in tinyproxy.log.read_text()


async def test_a_proxy_that_is_down_is_named(aiohttp_client: Any, https_platform: str) -> None:
    gateway = await gateway_for(
        aiohttp_client, https_platform, proxy=f"http://127.0.0.1:{free_port()}"
    )
    status, body = await echo(gateway)
    assert (status, body["error"]) == (502, "upstream_unreachable")
    assert "proxy" in body["responseHeader"]["msg"]
