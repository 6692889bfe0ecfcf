"""The client programs of docs/clients/, run as an internal service runs them, against a live
gateway and its embedded sandbox: a caller token, X-Neu-App, a code exchange and a trade."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.docs.pages import DOCS, page
from tests.support.processes import GatewayProcess, StartGateway, run_command, write_config

pytestmark = pytest.mark.e2e
CLIENTS = DOCS / "clients"
TOKEN = "orders-token-0123456789abcdef"
# The routes the story takes, and only those: the least a service needs.
ROUTES = [
    "POST /neuopenapi/oauth/mini/accessToken",
    "GET /neuopenapi/oauth/mini/user/info",
    "POST /neuopenapi/pay/transactions/trade",
    "GET /neuopenapi/pay/transactions/tradedetail",
]
PROGRAMS = {
    "python": [sys.executable, str(CLIENTS / "client.py")],
    "node": ["node", str(CLIENTS / "client.mjs")],
    "java": ["java", str(CLIENTS / "Client.java")],
}


async def start(tmp_path: Path, start_gateway: StartGateway) -> GatewayProcess:
    routes = ", ".join(f"'{route}'" for route in ROUTES)
    callers = f"{{orders: {{token_env: ORDERS_TOKEN, apps: [demo], allow: [{routes}]}}}}"
    return await start_gateway(write_config(tmp_path, callers=callers), env={"ORDERS_TOKEN": TOKEN})


async def login_code(gateway: GatewayProcess) -> str:
    """What neu.login() hands the mini app's front end, played by the sandbox."""
    async with aiohttp.ClientSession() as session:
        login = await session.post(
            gateway.sandbox_url + "/sandbox/login", data={"user": "13800138000"}
        )
        code: str = (await login.json())["response"]["code"]
    return code


@pytest.mark.parametrize("language", list(PROGRAMS))
async def test_the_client_logs_a_user_in_and_creates_a_trade_through_the_gateway(
    language: str, tmp_path: Path, start_gateway: StartGateway
) -> None:
    command = PROGRAMS[language]
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    gateway = await start(tmp_path, start_gateway)
    env = {"NEU_GATEWAY_URL": gateway.url, "NEU_GATEWAY_TOKEN": TOKEN, "NEU_APP": "demo"}
    result = await run_command(*command, await login_code(gateway), env=env, cwd=tmp_path)
    assert result.status == 0, result.stderr
    match = re.fullmatch(r"openId=(\S+) tradeNo=(\S+) status=(\d+)\n", result.stdout)
    assert match is not None, result.stdout
    # The trade reached the platform, signed as the demo app.
    async with aiohttp.ClientSession() as session:
        trade = await session.get(f"{gateway.sandbox_url}/sandbox/trades/{match.group(2)}")
        assert trade.status == 200
    # Each call in the access log under the service's name and the request id it gave.
    detail = "route=/neuopenapi/pay/transactions/tradedetail status=200"
    await gateway.wait_for_log(f"caller=orders app=demo method=GET {detail}")
    assert "request_id=orders-" in gateway.log


async def test_the_python_client_says_what_the_gateway_refused(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start(tmp_path, start_gateway)
    env = {"NEU_GATEWAY_URL": gateway.url, "NEU_GATEWAY_TOKEN": "not-a-token-of-anyone-here"}
    result = await run_command(*PROGRAMS["python"], "any-code", env=env, cwd=tmp_path)
    assert result.status == 1
    assert result.stderr == "refused: /neuopenapi/oauth/mini/accessToken: 401 unauthenticated\n"


def test_the_page_shows_each_program_whole() -> None:
    shown = re.findall(r'--8<-- "docs/clients/([^"]+)"', page("clients.md"))
    assert sorted(shown) == sorted(path.name for path in CLIENTS.iterdir() if path.is_file())
