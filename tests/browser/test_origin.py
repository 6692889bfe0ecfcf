"""A hostile web page in a real browser: open on this machine, it tries to change the sandbox
as the attack in issue 22 did, with a form POST and with a fetch, from another origin."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Page

from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import DEMO_USER, Settings
from tests.support.paths import DETAIL
from tests.support.platform_double import APPID, SECRET
from tests.support.sandbox_client import call

pytestmark = pytest.mark.e2e
Client = TestClient[Any, Any]


@pytest.fixture
async def sandbox(aiohttp_client: Any) -> Client:
    client: Client = await aiohttp_client(create_sandbox_app({APPID: SECRET}, Settings()))
    return client


async def hostile_site(aiohttp_server: Any, html: str) -> TestServer:
    """A page of another origin on this machine (another port), as any local web app is."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    server: TestServer = await aiohttp_server(app)
    return server


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["same site", "cross site"])
async def test_a_form_on_another_origin_creates_no_user(
    sandbox: Client, aiohttp_server: Any, page: Page, host: str
) -> None:
    target = sandbox.make_url("/sandbox/users")
    site = await hostile_site(
        aiohttp_server,
        f"""<form id="f" method="POST" action="{target}">
        <input name="name" value="mallory"></form>
        <script>document.getElementById("f").submit()</script>""",
    )
    async with page.expect_response(str(target)) as answered:
        await page.goto(f"http://{host}:{site.port}/")
    response = await answered.value
    assert response.status == 403
    assert (await response.json())["responseHeader"]["msg"].startswith(
        "refused: a web page on another origin may not change the sandbox"
    )
    users = await (await sandbox.get("/sandbox/users")).json()
    assert [user["user"] for user in users["response"]["users"]] == [DEMO_USER.phone]


async def test_a_fetch_from_another_origin_leaves_the_secret_alone(
    sandbox: Client, aiohttp_server: Any, page: Page
) -> None:
    target = sandbox.make_url(f"/sandbox/apps/{APPID}/secret")
    site = await hostile_site(
        aiohttp_server,
        f"""<script>fetch({json.dumps(str(target))}, {{method: "POST", mode: "no-cors",
        body: new URLSearchParams({{secret: "stolen"}})}})</script>""",
    )
    async with page.expect_response(str(target)) as answered:
        await page.goto(f"http://127.0.0.1:{site.port}/")
    assert (await answered.value).status == 403
    # Signed with the secret the app has always had: still accepted.
    body = await call(sandbox, "GET", DETAIL, {"tradeNo": "T"})
    assert body["responseHeader"]["msg"] == "trade 'T' not found"
