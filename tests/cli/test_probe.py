"""check-config --probe: each app's upstream called, through a real server on loopback: once
unsigned for its clock, once signed to prove the app's secret (against the sandbox, which
checks signs as the platform does)."""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.cli.probe import PROBE_TRADE_PREFIX, probe_upstreams
from gateway.config.load import from_mapping
from gateway.config.model import Config
from gateway.sandbox.server import create_sandbox_app
from tests.support.paths import DETAIL
from tests.support.ports import free_port

HOUR_S = 3600
SECRET = "s3cret-value"


def config(**upstreams: str) -> Config:
    apps = {
        name: {"appid": f"{name}-appid", "secret_env": "S", "upstream": upstream}
        for name, upstream in upstreams.items()
    }
    return from_mapping({"apps": apps, "timeouts": {"connect_s": 2, "total_s": 5}}, {"S": SECRET})


async def platform_an_hour_behind(aiohttp_server: Any, details: list[str] | None = None) -> str:
    """Its base URL answers 404 (an hour behind, by its Date); tradedetail, "not found"."""

    def dated(response: web.Response) -> web.Response:
        response.headers["Date"] = formatdate(time.time() - HOUR_S, usegmt=True)
        return response

    async def base(request: web.Request) -> web.Response:
        return dated(web.Response(status=404))

    async def detail(request: web.Request) -> web.Response:
        if details is not None:
            details.append(request.query["tradeNo"])
        refusal = {"responseHeader": {"status": 404, "msg": "trade not found"}, "response": None}
        return dated(web.json_response(refusal))

    app = web.Application()
    app.router.add_get("/", base)
    app.router.add_get(DETAIL, detail)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def sandbox_with(aiohttp_server: Any, secrets: dict[str, str]) -> str:
    """The sandbox on loopback, as the platform, knowing these appids' secrets."""
    server = await aiohttp_server(create_sandbox_app(secrets))
    return str(server.make_url("")).rstrip("/")


async def test_an_upstream_that_answers_gives_its_status_and_clock(aiohttp_server: Any) -> None:
    details: list[str] = []
    url = await platform_an_hour_behind(aiohttp_server, details)
    lines, all_passed = await probe_upstreams(config(late=url))
    assert all_passed
    line, sign = lines
    shown = re.fullmatch(
        rf"app late: {re.escape(url)} answered HTTP 404; the platform's clock is (-\d+\.\d) s "
        r"from this host's; beyond clock.max_skew_s, so the gateway signs with the platform's "
        r"time",
        line,
    )
    assert shown, line
    # (The Date header counts whole seconds.)
    assert -HOUR_S - 2 < float(shown[1]) < -HOUR_S + 2
    assert sign == "app late: sign accepted (a tradedetail of no trade: 404 trade not found)"
    [trade_no] = details
    assert trade_no.startswith(PROBE_TRADE_PREFIX)


async def test_the_sandbox_accepts_the_right_secret_and_refuses_a_wrong_one(
    aiohttp_server: Any,
) -> None:
    platform = await sandbox_with(
        aiohttp_server, {"right-appid": SECRET, "wrong-appid": "the-platforms-new-secret"}
    )
    lines, all_passed = await probe_upstreams(config(right=platform, wrong=platform))
    assert not all_passed
    right, wrong = [line for line in lines if "answered HTTP" not in line]
    assert re.fullmatch(
        r"app right: sign accepted \(a tradedetail of no trade: 404 trade "
        rf"'{PROBE_TRADE_PREFIX}[0-9a-f]{{12}}' not found\)",
        right,
    ), right
    assert wrong == (
        "app wrong: the platform refused the sign: the secret for apps.wrong is wrong (or was "
        "rotated on the platform)"
    )
    assert all(SECRET not in line for line in lines)


async def test_an_appid_the_platform_does_not_know_proves_nothing(aiohttp_server: Any) -> None:
    platform = await sandbox_with(aiohttp_server, {"other-appid": SECRET})
    lines, all_passed = await probe_upstreams(config(demo=platform))
    assert not all_passed
    assert lines[1] == (
        "app demo: the sign was not checked: a signed tradedetail answered HTTP 200, "
        "status 401 unknown appid 'demo-appid'"
    )


async def test_an_upstream_that_is_not_the_platforms_api_fails_the_probe(
    aiohttp_server: Any,
) -> None:
    app = web.Application()
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    lines, all_passed = await probe_upstreams(config(elsewhere=url))
    assert not all_passed
    assert lines[1] == (
        "app elsewhere: the sign was not checked: a signed tradedetail answered HTTP 404"
    )


async def test_an_upstream_that_does_not_answer_fails_the_probe(aiohttp_server: Any) -> None:
    url = await platform_an_hour_behind(aiohttp_server)
    nobody = f"http://127.0.0.1:{free_port()}"
    lines, all_passed = await probe_upstreams(config(up=url, down=nobody, emulated="sandbox"))
    assert not all_passed
    up, up_sign, down, emulated = lines
    assert up.startswith(f"app up: {url} answered HTTP 404")
    assert up_sign.startswith("app up: sign accepted")
    assert down.startswith(f"app down: {nobody} failed: ")
    assert emulated == (
        "app emulated: sandbox (embedded; runs on this host's clock and checks signs with "
        "this config's secret)"
    )


async def test_a_tls_file_that_cannot_be_used_fails_the_probe_before_any_call(
    tmp_path: Path,
) -> None:
    demo = {
        "appid": "demo-appid",
        "secret_env": "S",
        "upstream": "https://platform.example",
        "tls": {"ca_file": str(tmp_path)},  # a directory
    }
    lines, all_passed = await probe_upstreams(from_mapping({"apps": {"demo": demo}}, {"S": SECRET}))
    assert not all_passed
    [line] = lines
    assert line.startswith("app demo: https://platform.example failed: apps.demo.tls.ca_file: ")
