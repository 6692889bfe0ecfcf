"""deploy/'s examples do what their documentation says: `check-config` passes each mounted
config without a warning (and every app's deliveries signed), the shared example's documented
curl gets through a real gateway built from its ConfigMap, and compose's payments stand-in
takes only deliveries signed as the gateway signs them and stops at once on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession

from gateway.config.load import from_mapping
from gateway.core.webhooks import signed_headers, signing_key
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
    fake_signing_secret,
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
    # Every app's payment callbacks go somewhere (else they end up dead in the outbox), signed
    # (else the service cannot tell them from a forged "paid").
    assert "none, so its callbacks" not in ran.stdout
    assert "deliveries unsigned" not in ran.stdout
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


@dataclass
class StandIn:
    """Compose's payments stand-in, running on loopback with a signing secret file of its own."""

    port: int
    secret_file: Path
    process: asyncio.subprocess.Process


def payments_stand_in(port: int, secret_file: Path) -> str:
    compose: Doc = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    command = compose["services"]["payments"]["command"]
    assert command[:2] == ["python", "-c"]
    source: str = command[2]
    assert '("0.0.0.0", 9000)' in source
    assert 'SECRET_FILE = "/run/secrets/neu_signing_demo"' in source
    source = source.replace('"/run/secrets/neu_signing_demo"', repr(str(secret_file)))
    return source.replace('("0.0.0.0", 9000)', f'("127.0.0.1", {port})')


@asynccontextmanager
async def running_stand_in(tmp_path: Path) -> AsyncIterator[StandIn]:
    port, secret_file = free_port(), tmp_path / "neu_signing_demo"
    secret_file.write_text(fake_signing_secret("demo") + "\n", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        payments_stand_in(port, secret_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(10):
            while not await listening(port):  # noqa: ASYNC110 - no event to await
                await asyncio.sleep(0.01)  # wait-ok: polls until the stand-in listens
        yield StandIn(port, secret_file, process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


BODY = b'{"tradeNo": "T-1"}'
MESSAGE_ID = "T-1:2"


def signed_as_the_gateway(
    secret: str, timestamp: float | None = None, body: bytes = BODY
) -> dict[str, str]:
    """A delivery's headers, signed by the gateway's own signer."""
    stamp = int(time.time() if timestamp is None else timestamp)
    return {
        "Idempotency-Key": MESSAGE_ID,
        **signed_headers([signing_key(secret)], MESSAGE_ID, stamp, body),
    }


async def listening(port: int) -> bool:
    """Whether the port takes a connection (one with no request: the stand-in logs nothing)."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def answer(
    session: ClientSession, stand_in: StandIn, headers: dict[str, str], body: bytes = BODY
) -> int:
    """The stand-in's status for one delivery."""
    async with session.post(
        f"http://127.0.0.1:{stand_in.port}/payments", data=body, headers=headers
    ) as response:
        return response.status


async def test_compose_payments_stand_in_takes_only_signed_deliveries(tmp_path: Path) -> None:
    async with running_stand_in(tmp_path) as stand_in, ClientSession() as session:
        secret = stand_in.secret_file.read_text(encoding="utf-8").strip()
        other = fake_signing_secret("another secret")
        refused = {
            "unsigned": {"Idempotency-Key": MESSAGE_ID},
            "signed with another secret": signed_as_the_gateway(other),
            "recorded and sent again 10 minutes later": signed_as_the_gateway(
                secret, time.time() - 600
            ),
        }
        for why, headers in refused.items():
            assert await answer(session, stand_in, headers) == 400, why
        # the body changed after signing
        tampered = signed_as_the_gateway(secret)
        assert await answer(session, stand_in, tampered, b'{"tradeNo": "T-2"}') == 400
        # during a rotation: the new secret's signature and the previous one's, either enough
        rotating = signed_as_the_gateway(secret)
        rotating["webhook-signature"] = (
            signed_as_the_gateway(other)["webhook-signature"] + " " + rotating["webhook-signature"]
        )
        assert await answer(session, stand_in, rotating) == 200
        assert await answer(session, stand_in, signed_as_the_gateway(secret)) == 200
        # a secret rewritten in place counts from the next delivery
        stand_in.secret_file.write_text(other + "\n", encoding="utf-8")
        assert await answer(session, stand_in, signed_as_the_gateway(secret)) == 400
        assert await answer(session, stand_in, signed_as_the_gateway(other)) == 200
        stand_in.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            out, _ = await stand_in.process.communicate()
    lines = out.decode().splitlines()
    verified = [line for line in lines if line.startswith("verified ")]
    assert verified == [f"verified {MESSAGE_ID} {BODY.decode()}"] * 3
    assert len([line for line in lines if line.startswith("refused")]) == 5


async def test_compose_payments_stand_in_stops_at_once_on_sigterm(tmp_path: Path) -> None:
    async with running_stand_in(tmp_path) as stand_in:
        stand_in.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            await stand_in.process.communicate()
        # 0, not -SIGTERM: it handled the signal, which as a container's PID 1 it must, since
        # the kernel gives PID 1 no default action for it.
        assert stand_in.process.returncode == 0
