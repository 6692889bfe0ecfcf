"""The curl examples of the README and of docs/calling.md, run as a reader runs them, against
the gateway and its sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.core.secrets import DEMO_SIGNING_SECRET
from tests.docs.pages import REPO, page, section
from tests.support.ports import free_port
from tests.support.processes import StartGateway, run_command, write_config
from tests.support.waiting import until_answers

pytestmark = pytest.mark.e2e


def shell_block(name: str, after_heading: str) -> str:
    """The first ```sh block under the heading of the page."""
    match = re.search(r"```sh\n(.*?)```", section(page(name), after_heading), re.DOTALL)
    assert match is not None, after_heading
    return match.group(1)


def answers(stdout: str) -> list[dict[str, Any]]:
    """Every JSON document curl printed, one after another."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := stdout.find("{", at)) >= 0:
        document, at = decoder.raw_decode(stdout, at)
        found.append(document)
    return found


async def test_the_walk_through_and_the_examples_succeed_against_the_sandbox(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    # As the repository's gateway.yaml has it: callbacks on, the demo app's deliveries signed
    # with the demo signing secret and sent to the sandbox standing in for the app's service.
    sandbox_port = free_port()
    app_callbacks = (
        f"{{deliver_to: 'http://127.0.0.1:{sandbox_port}/sandbox/deliveries', "
        f"signing_secret: {DEMO_SIGNING_SECRET}}}"
    )
    config = write_config(
        tmp_path,
        app_callbacks=app_callbacks,
        sandbox=f"{{listen: {{port: {sandbox_port}}}, notify_backoff_s: 0.05}}",
        callbacks=f"{{listen: {{port: 0}}, store: 'sqlite:///{tmp_path}/outbox.db'}}",
    )
    gateway = await start_gateway(config)
    script = shell_block("README.md", "## Try it: a mini app's life, with curl") + shell_block(
        "calling.md", "# Calling the platform through the gateway"
    )
    # The reader's addresses are the test's; nothing is sent beyond loopback.
    addresses = f"GW={gateway.url}; SB={gateway.sandbox_url}; CB={gateway.callbacks_url}"
    script = re.sub(r"(?m)^GW=.*$", addresses, script)
    script = re.sub(r"(?m)^NOTIFY_URL=.*$", "NOTIFY_URL=http://127.0.0.1:9/notify", script)
    result = await run_command("bash", "-euo", "pipefail", "-c", script, cwd=REPO)
    assert result.status == 0, result.stderr
    statuses = [answer["responseHeader"]["status"] for answer in answers(result.stdout)]
    # 8 answers printed by the walk-through, 7 by the examples.
    assert statuses == [200] * 15, result.stdout
    # The payment reached the stand-in service, whose check of the signature passed.
    trade_no = next(
        answer["response"]["tradeNo"]
        for answer in answers(result.stdout)
        if isinstance(answer["response"], dict) and "transactionStatus" in answer["response"]
    )

    async def delivered() -> bool:
        async with aiohttp.ClientSession() as session:
            listing = await session.get(f"{gateway.sandbox_url}/sandbox/deliveries")
            received: list[dict[str, Any]] = (await listing.json())["response"]
        return any(r["webhookId"] == f"{trade_no}:2" and r["verified"] for r in received)

    await until_answers(delivered, timeout_s=10)
