"""check-config --probe: each app's upstream called once, through a real server on loopback."""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.cli.probe import probe_upstreams
from gateway.config.load import from_mapping
from gateway.config.model import Config
from tests.support.ports import free_port

HOUR_S = 3600


def config(**upstreams: str) -> Config:
    apps = {
        name: {"appid": f"{name}-appid", "secret_env": "S", "upstream": upstream}
        for name, upstream in upstreams.items()
    }
    return from_mapping(
        {"apps": apps, "timeouts": {"connect_s": 2, "total_s": 5}}, {"S": "s3cret-value"}
    )


async def platform_an_hour_behind(aiohttp_server: Any) -> str:
    async def base(request: web.Request) -> web.Response:
        return web.Response(
            status=404, headers={"Date": formatdate(time.time() - HOUR_S, usegmt=True)}
        )

    app = web.Application()
    app.router.add_get("/", base)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_an_upstream_that_answers_gives_its_status_and_clock(aiohttp_server: Any) -> None:
    url = await platform_an_hour_behind(aiohttp_server)
    lines, all_answered = await probe_upstreams(config(late=url))
    assert all_answered
    [line] = lines
    shown = re.fullmatch(
        rf"app late: {re.escape(url)} answered HTTP 404; the platform's clock is (-\d+\.\d) s "
        r"from this host's; beyond clock.max_skew_s, so the gateway signs with the platform's "
        r"time",
        line,
    )
    assert shown, line
    # (The Date header counts whole seconds.)
    assert -HOUR_S - 2 < float(shown[1]) < -HOUR_S + 2


async def test_an_upstream_that_does_not_answer_fails_the_probe(aiohttp_server: Any) -> None:
    url = await platform_an_hour_behind(aiohttp_server)
    nobody = f"http://127.0.0.1:{free_port()}"
    lines, all_answered = await probe_upstreams(config(up=url, down=nobody, emulated="sandbox"))
    assert not all_answered
    up, down, emulated = lines
    assert up.startswith(f"app up: {url} answered HTTP 404")
    assert down.startswith(f"app down: {nobody} failed: ")
    assert emulated == "app emulated: sandbox (embedded; runs on this host's clock)"


async def test_a_tls_file_that_cannot_be_used_fails_the_probe_before_any_call(
    tmp_path: Path,
) -> None:
    demo = {
        "appid": "demo-appid",
        "secret_env": "S",
        "upstream": "https://platform.example",
        "tls": {"ca_file": str(tmp_path)},  # a directory
    }
    lines, all_answered = await probe_upstreams(
        from_mapping({"apps": {"demo": demo}}, {"S": "s3cret-value"})
    )
    assert not all_answered
    [line] = lines
    assert line.startswith("app demo: https://platform.example failed: apps.demo.tls.ca_file: ")
