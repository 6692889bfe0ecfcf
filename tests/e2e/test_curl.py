"""curl, as a developer would type it, against the real gateway process and the platform double."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.e2e.conftest import StartGateway, neu_gateway, run_command, write_config
from tests.platform_double import SECRET, PlatformDouble

pytestmark = pytest.mark.e2e


async def curl(*args: str) -> dict[str, object]:
    result = await run_command("curl", "--silent", "--show-error", "--max-time", "30", *args)
    assert result.status == 0, result.stderr
    body: dict[str, object] = json.loads(result.stdout)
    return body


@pytest.fixture
async def gateway_url(tmp_path: Path, platform_url: str, start_gateway: StartGateway) -> str:
    gateway = await start_gateway(write_config(tmp_path, platform_url))
    return gateway.url


async def test_curl_form_post(gateway_url: str, platform: PlatformDouble) -> None:
    body = await curl(
        "-X",
        "POST",
        f"{gateway_url}/neuopenapi/oauth/mini/accessToken",
        "--data-urlencode",
        "code=ce5f098c-8ae8-4fc9-b20c-c022de39e7c9",
        "--data-urlencode",
        "grantType=authorization_code",
        "--data-urlencode",
        "scope=user.info,user.phone",
    )
    assert body["responseHeader"] == {"status": 200, "msg": "OK"}
    assert platform.last.sign_ok
    assert platform.last.params["scope"] == "user.info,user.phone"


async def test_curl_get_with_query(gateway_url: str, platform: PlatformDouble) -> None:
    body = await curl(
        "-G",
        f"{gateway_url}/neuopenapi/pay/transactions/tradedetail",
        "--data-urlencode",
        "tradeNo=8bf6dfaad61d4206a1726a2cfec697af",
    )
    assert body["responseHeader"] == {"status": 200, "msg": "OK"}
    assert platform.last.method == "GET"
    assert platform.last.sign_ok
    assert platform.last.params["tradeNo"] == "8bf6dfaad61d4206a1726a2cfec697af"


async def test_curl_file_upload(gateway_url: str, platform: PlatformDouble, tmp_path: Path) -> None:
    upload = tmp_path / "photo.jpg"
    blob = os.urandom(3 * 1024 * 1024 + 7)
    upload.write_bytes(blob)
    body = await curl(
        f"{gateway_url}/neuopenapi/file/upload",
        "-F",
        "title=holiday 中文",
        "-F",
        f"fileData=@{upload};type=image/jpeg",
    )
    assert body["responseHeader"] == {"status": 200, "msg": "OK"}
    assert platform.last.sign_ok
    assert platform.last.params["title"] == "holiday 中文"
    [received] = platform.last.files
    assert (received.filename, received.content_type) == ("photo.jpg", "image/jpeg")
    assert received.sha256 == hashlib.sha256(blob).hexdigest()


async def test_curl_sees_errors_in_the_platform_envelope(gateway_url: str) -> None:
    body = await curl(f"{gateway_url}/neuopenapi/pay/transactions/trade", "-d", "secret=oops")
    assert body["error"] == "secret_param_rejected"
    assert body["responseHeader"]["status"] == 400  # type: ignore[index]


async def test_sign_command_matches_what_the_platform_verified(
    gateway_url: str, platform: PlatformDouble, tmp_path: Path
) -> None:
    await curl(
        "-G",
        f"{gateway_url}/neuopenapi/pay/transactions/tradedetail",
        "--data-urlencode",
        "tradeNo=T-1",
    )
    received = platform.last.params
    assert platform.last.sign_ok
    result = await neu_gateway(
        "sign",
        "-c",
        str(tmp_path / "gateway.yaml"),
        "tradeNo=T-1",
        f"timestamp={received['timestamp']}",
        env={"NEU_SECRET_DEMO": SECRET},
    )
    assert result.status == 0, result.stderr
    assert f"sign:      {received['sign']}" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    verified = await neu_gateway(
        "verify",
        "-c",
        str(tmp_path / "gateway.yaml"),
        *(f"{key}={value}" for key, value in received.items()),
        env={"NEU_SECRET_DEMO": SECRET},
    )
    assert verified.status == 0
    assert "result:    valid" in verified.stdout


async def test_curl_oversized_upload_is_refused_before_it_is_sent(
    tmp_path: Path, platform_url: str, start_gateway: StartGateway, platform: PlatformDouble
) -> None:
    gateway = await start_gateway(
        write_config(tmp_path, platform_url, limits="{max_body_bytes: 1048576}")
    )
    upload = tmp_path / "big.bin"
    upload.write_bytes(os.urandom(5 * 1024 * 1024))
    result = await run_command(
        "curl",
        "--silent",
        "--verbose",
        "--max-time",
        "30",
        f"{gateway.url}/neuopenapi/file/upload",
        "-F",
        f"fileData=@{upload}",
    )
    # curl asks first (Expect: 100-continue) and the gateway answers 413 without the body.
    assert "Expect: 100-continue" in result.stderr
    assert json.loads(result.stdout)["error"] == "body_too_large"
    assert platform.received == []
    await gateway.wait_for_log("route=/neuopenapi/file/upload status=413")
