"""A reload while a request is in flight: the request keeps the config it started with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config.errors import ConfigError
from gateway.config.load import from_mapping
from gateway.core import signing
from gateway.runtime.app import create_app
from gateway.runtime.reload import apply_config
from tests.conftest import gateway_config, guarded
from tests.egress.test_resilience import Scripted
from tests.support.platform_double import APPID, SECRET

ECHO = "/neuopenapi/bench/echo"


async def platform(aiohttp_server: Any) -> tuple[Scripted, str]:
    scripted = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    server = await aiohttp_server(app)
    return scripted, str(server.make_url("")).rstrip("/")


async def test_a_request_in_flight_keeps_its_upstream_and_secret(
    aiohttp_client: Any, aiohttp_server: Any
) -> None:
    first, first_url = await platform(aiohttp_server)
    second, second_url = await platform(aiohttp_server)
    gateway = await aiohttp_client(guarded(create_app(gateway_config(first_url))))
    admitted, reloaded = asyncio.Event(), asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        # Sent only after the gateway's 100 Continue: the request is admitted by then.
        admitted.set()
        await reloaded.wait()
        yield b"x=1"

    sending = asyncio.ensure_future(
        gateway.post(
            ECHO,
            data=body(),
            expect100=True,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "3"},
        )
    )
    await admitted.wait()
    demo = {"appid": APPID, "secret_env": "ROTATED", "upstream": second_url}
    apply_config(gateway.app, from_mapping({"apps": {"demo": demo}}, {"ROTATED": "rotated-secret"}))
    reloaded.set()
    response = await sending
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
    first, first_url = await platform(aiohttp_server)
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
