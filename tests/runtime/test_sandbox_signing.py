"""The sandbox standing in for the apps' service knows the signing secrets of the apps it plays
the platform for, and only theirs, from the start and after a rotation."""

from __future__ import annotations

import base64
import time
from dataclasses import replace
from typing import Any

from gateway.config.load import from_mapping
from gateway.core.secrets import Secret
from gateway.core.webhooks import signed_headers, signing_key
from gateway.runtime.reload import tell_sandbox
from gateway.runtime.resources import sandbox_app
from tests.config.documents import app

SANDBOX_APP = "whsec_" + base64.b64encode(b"signing-key-of-an-app-on-sandbox").decode()
REAL_APP = "whsec_" + base64.b64encode(b"signing-key-of-an-app-in-the-wild").decode()
ROTATED = "whsec_" + base64.b64encode(b"the-sandbox-app-signing-key-next").decode()


async def status_of(sandbox: Any, secret: str) -> int:
    headers = signed_headers([signing_key(secret)], "T1:2", int(time.time()), b"{}")
    answer = await sandbox.post("/sandbox/deliveries", data=b"{}", headers=headers)
    return int(answer.status)


async def test_the_sandbox_knows_its_apps_signing_secrets_and_no_others(
    aiohttp_client: Any,
) -> None:
    document = {
        "apps": {
            "onsandbox": app(upstream="sandbox", callbacks={"signing_secret_env": "A"}),
            "wild": app(appid="a2", callbacks={"signing_secret_env": "B"}),
        },
        "sandbox": {"listen": {"port": 0}},
    }
    config = from_mapping(document, {"S": "s", "A": SANDBOX_APP, "B": REAL_APP})
    sandbox_application = sandbox_app(config)
    sandbox = await aiohttp_client(sandbox_application)
    assert await status_of(sandbox, SANDBOX_APP) == 200
    assert await status_of(sandbox, REAL_APP) == 400

    onsandbox = replace(config.apps["onsandbox"], signing_secrets=(Secret(ROTATED),))
    rotated = replace(config, apps={**config.apps, "onsandbox": onsandbox})
    tell_sandbox(sandbox_application, config, rotated)
    assert await status_of(sandbox, ROTATED) == 200
    assert await status_of(sandbox, SANDBOX_APP) == 400
