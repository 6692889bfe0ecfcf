"""curl, as a developer would type it, against the real gateway process and its embedded sandbox.

The sandbox verifies every sign the gateway makes, as the platform would.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import SANDBOX_ECHO as ECHO
from tests.support.platform_double import SECRET
from tests.support.processes import (
    GatewayProcess,
    StartGateway,
    neu_gateway,
    run_command,
    write_config,
)

pytestmark = pytest.mark.e2e


async def curl(*args: str) -> dict[str, Any]:
    result = await run_command("curl", "--silent", "--show-error", "--max-time", "30", *args)
    assert result.status == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def ok(body: dict[str, Any]) -> Any:
    assert body["responseHeader"] == {"status": 200, "msg": "OK"}, body
    return body["response"]


@pytest.fixture
async def gateway(tmp_path: Path, start_gateway: StartGateway) -> GatewayProcess:
    return await start_gateway(write_config(tmp_path))


async def test_curl_form_post(gateway: GatewayProcess) -> None:
    code = ok(await curl(f"{gateway.sandbox_url}/sandbox/login", "-d", "user=alice"))["code"]
    token = ok(
        await curl(
            "-X",
            "POST",
            f"{gateway.url}/neuopenapi/oauth/mini/accessToken",
            "--data-urlencode",
            f"code={code}",
            "--data-urlencode",
            "grantType=authorization_code",
            "--data-urlencode",
            "scope=user.info,user.phone",
        )
    )
    assert token["tokenType"] == "bearer"


async def test_curl_get_with_query(gateway: GatewayProcess) -> None:
    echoed = ok(await curl("-G", f"{gateway.url}{ECHO}", "--data-urlencode", "text=a+b&c=d%e 中文"))
    assert echoed["params"]["text"] == "a+b&c=d%e 中文"


async def test_curl_file_upload(gateway: GatewayProcess, tmp_path: Path) -> None:
    upload = tmp_path / "photo.jpg"
    blob = os.urandom(3 * 1024 * 1024 + 7)
    upload.write_bytes(blob)
    echoed = ok(
        await curl(
            f"{gateway.url}{ECHO}",
            "-F",
            "title=holiday 中文",
            "-F",
            f"fileData=@{upload};type=image/jpeg",
        )
    )
    assert echoed["params"]["title"] == "holiday 中文"
    [received] = echoed["files"]
    assert (received["name"], received["filename"]) == ("fileData", "photo.jpg")
    assert received["sha256"] == hashlib.sha256(blob).hexdigest()


async def test_curl_sees_gateway_errors_in_the_platform_envelope(gateway: GatewayProcess) -> None:
    body = await curl(f"{gateway.url}/neuopenapi/pay/transactions/trade", "-d", "secret=oops")
    assert body["error"] == "secret_param_rejected"
    assert body["responseHeader"]["status"] == 400


async def test_curl_json_without_its_content_type_is_told_to_add_it(
    gateway: GatewayProcess,
) -> None:
    body = await curl(f"{gateway.url}{ECHO}", "-d", '{"title": "Paid", "language": "en_US"}')
    assert body["error"] == "json_without_content_type"
    assert "-H 'Content-Type: application/json'" in body["responseHeader"]["msg"]
    told = await curl(
        f"{gateway.url}{ECHO}", "-H", "Content-Type: application/json", "-d", '{"title": "Paid"}'
    )
    assert ok(told)["params"]["title"] == "Paid"


async def test_sign_command_matches_what_the_platform_verified(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    echoed = ok(await curl("-G", f"{gateway.url}{ECHO}", "--data-urlencode", "tradeNo=T-1"))
    timestamp = echoed["params"]["timestamp"]
    config = str(tmp_path / "gateway.yaml")
    env = {"NEU_SECRET_DEMO": SECRET}
    result = await neu_gateway(
        "sign", "-c", config, "tradeNo=T-1", f"timestamp={timestamp}", env=env
    )
    assert result.status == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    form = next(line for line in result.stdout.splitlines() if line.startswith("form:"))
    query = form.removeprefix("form:").strip()
    # The sandbox itself accepts the printed form as a correctly signed request.
    direct = ok(await curl(f"{gateway.sandbox_url}{ECHO}?{query}"))
    assert direct["params"]["tradeNo"] == "T-1"
    sign = query.rsplit("sign=", 1)[1]
    verified = await neu_gateway(
        "verify", "-c", config, "tradeNo=T-1", f"timestamp={timestamp}", f"sign={sign}", env=env
    )
    assert verified.status == 0
    assert "result:    valid" in verified.stdout


async def test_curl_oversized_upload_is_refused_before_it_is_sent(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(write_config(tmp_path, limits="{max_body_bytes: 1048576}"))
    upload = tmp_path / "big.bin"
    upload.write_bytes(os.urandom(5 * 1024 * 1024))
    result = await run_command(
        "curl",
        "--silent",
        "--verbose",
        "--max-time",
        "30",
        f"{gateway.url}{ECHO}",
        "-F",
        f"fileData=@{upload}",
    )
    # curl asks first (Expect: 100-continue) and the gateway answers 413 without the body.
    assert "Expect: 100-continue" in result.stderr
    assert json.loads(result.stdout)["error"] == "body_too_large"
    await gateway.wait_for_log("status=413 path=/neuopenapi/sandbox/echo")
    stats = ok(await curl(f"{gateway.sandbox_url}/sandbox/stats"))
    assert stats["calls"] == {}
