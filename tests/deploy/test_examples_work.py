"""deploy/'s examples do what their documentation says: `check-config` passes each mounted
config without a warning, the shared example's documented curl gets through a real gateway
built from its ConfigMap, and compose's payments stand-in stops at once on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession

from gateway.config.load import from_mapping
from gateway.runtime.app import create_app
from tests.cli.support import run
from tests.conftest import guarded
from tests.deploy.manifests import (
    DEPLOY,
    DOCKER,
    Doc,
    KubeGateway,
    credential_env_names,
    fake,
    kube_gateways,
    with_stand_in_files,
)
from tests.support.platform_double import PlatformDouble, reference_sign
from tests.support.ports import free_port

SHARED_HOST = "http://neu-gateway.neu-gateway.svc.cluster.local:8080"


def mounted_configs() -> list[Any]:
    """(config as written, environment) of every gateway in deploy/."""
    docker: Doc = yaml.safe_load((DOCKER / "gateway.yaml").read_text(encoding="utf-8"))
    environ = {name: fake(name) for name in credential_env_names(docker)}
    found = [pytest.param(docker, environ, id="docker/gateway.yaml")]
    return found + [pytest.param(gw.document, gw.environ, id=gw.id) for gw in kube_gateways()]


@pytest.mark.parametrize(("document", "environ"), mounted_configs())
def test_check_config_passes_each_example_without_a_warning(
    document: Doc,
    environ: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(with_stand_in_files(document, tmp_path)), encoding="utf-8")
    ran = run(capsys, "check-config", "-c", str(path))
    assert (ran.status, ran.stderr) == (0, "")
    assert [record.getMessage() for record in caplog.records if record.levelname != "INFO"] == []
    # Every app's payment callbacks go somewhere (else they end up dead in the outbox).
    assert "none, so its callbacks" not in ran.stdout
    for app in (document.get("apps") or {}).values():
        if document.get("callbacks", {}).get("listen"):
            assert app["callbacks"]["deliver_to"]


def shared_gateway() -> KubeGateway:
    (gw,) = [gw for gw in kube_gateways() if gw.example == "shared"]
    return gw


def documented_curl() -> list[str]:
    """The curl deploy/README.md shows a calling service of the shared gateway running."""
    readme = re.sub(r"\\\n\s*", " ", (DEPLOY / "README.md").read_text(encoding="utf-8"))
    (command,) = [
        line.strip()
        for line in readme.splitlines()
        if line.strip().startswith(f"curl -s {SHARED_HOST}")
    ]
    return shlex.split(command)


async def test_the_shared_examples_documented_curl_gets_through(
    tmp_path: Path, platform: PlatformDouble, platform_url: str, aiohttp_client: Any
) -> None:
    gw = shared_gateway()
    document = with_stand_in_files(gw.document, tmp_path)
    for app in document["apps"].values():
        app["upstream"] = platform_url
    # Only the API is under test: no admin or callbacks listener bound, no Redis.
    for key in ("admin", "callbacks", "cache"):
        document.pop(key)
    gateway = await aiohttp_client(guarded(create_app(from_mapping(document, gw.environ))))

    argv = documented_curl()
    assert "-G" in argv
    (url,) = [word for word in argv if word.startswith(SHARED_HOST)]
    params = dict(argv[i + 1].split("=", 1) for i, word in enumerate(argv) if word == "-d")
    headers = dict(argv[i + 1].split(": ", 1) for i, word in enumerate(argv) if word == "-H")
    assert "X-Neu-App" not in headers  # the point: the caller's only app is taken
    # $NAME_TOKEN is the token of caller `name`, which the example reads from its token_file.
    (caller,) = re.findall(r"\$([A-Z]+)_TOKEN", headers["Authorization"])
    token = fake(gw.document["callers"][caller.lower()]["token_file"])
    headers["Authorization"] = re.sub(r"\$[A-Z_]+", token, headers["Authorization"])
    params = {key: "T-1" if value.startswith("$") else value for key, value in params.items()}

    response = await gateway.get(url.removeprefix(SHARED_HOST), params=params, headers=headers)
    assert response.status == 200, await response.text()
    (app,) = gw.document["callers"][caller.lower()]["apps"]
    sent = platform.last.params
    assert sent["appid"] == gw.document["apps"][app]["appid"]
    assert sent["sign"] == reference_sign(sent, fake(gw.document["apps"][app]["secret_file"]))


def payments_stand_in(port: int) -> str:
    compose: Doc = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    command = compose["services"]["payments"]["command"]
    assert command[:2] == ["python", "-c"]
    source: str = command[2]
    assert '("0.0.0.0", 9000)' in source
    return source.replace('("0.0.0.0", 9000)', f'("127.0.0.1", {port})')


async def delivered(session: ClientSession, port: int) -> bool:
    """One payment callback delivered to the stand-in, as the gateway would."""
    try:
        async with session.post(
            f"http://127.0.0.1:{port}/payments",
            data=b'{"tradeNo": "T-1"}',
            headers={"Idempotency-Key": "T-1:SUCCESS"},
        ) as response:
            return response.status == 200
    except OSError:
        return False


async def test_compose_payments_stand_in_stops_at_once_on_sigterm() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        payments_stand_in(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with ClientSession() as session, asyncio.timeout(10):
            while not await delivered(session, port):  # noqa: ASYNC110 - no event to await
                await asyncio.sleep(0.01)  # wait-ok: polls until the stand-in listens
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # 0, not -SIGTERM: it handled the signal, which as a container's PID 1 it must, since
    # the kernel gives PID 1 no default action for it.
    assert process.returncode == 0
    assert b'T-1:SUCCESS {"tradeNo": "T-1"}' in out
