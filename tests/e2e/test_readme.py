"""The curl examples of the README and of docs/calling.md, run as a reader runs them, against
the gateway and its sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.docs.pages import REPO, page, section
from tests.support.processes import StartGateway, run_command, write_config

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
    gateway = await start_gateway(write_config(tmp_path))
    script = shell_block("README.md", "## Try it: a mini app's life, with curl") + shell_block(
        "calling.md", "# Calling the platform through the gateway"
    )
    # The reader's addresses are the test's; nothing is sent beyond loopback.
    script = re.sub(r"(?m)^GW=.*$", f"GW={gateway.url}; SB={gateway.sandbox_url}", script)
    script = re.sub(r"(?m)^NOTIFY_URL=.*$", "NOTIFY_URL=http://127.0.0.1:9/notify", script)
    result = await run_command("bash", "-euo", "pipefail", "-c", script, cwd=REPO)
    assert result.status == 0, result.stderr
    statuses = [answer["responseHeader"]["status"] for answer in answers(result.stdout)]
    # 7 answers printed by the walk-through, 7 by the examples.
    assert statuses == [200] * 14, result.stdout
