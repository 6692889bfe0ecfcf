"""schemathesis against a live gateway and its sandbox, with a caller token: every check
(`--checks all`), the stateful phase following the description's links. It finds nothing:
no server error, no answer that breaks the description, no description the gateway does not
honour. What it found so far is fixed in the gateway or in the description."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.support.processes import StartGateway, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.long]
REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TOKEN = "fuzzer-token-0123456789abcdef0123"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Fixed, so a run in CI is repeatable; NEU_FUZZ_SEED and NEU_FUZZ_EXAMPLES (examples per
# operation, every phase) explore further. The phases' own numbers are in schemathesis.toml.
SEED = os.environ.get("NEU_FUZZ_SEED", "20261207")
EXAMPLES = os.environ.get("NEU_FUZZ_EXAMPLES")
RUN_LIMIT_S = 600


async def test_schemathesis_finds_nothing_against_the_gateway_and_sandbox(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    config = write_config(
        tmp_path,
        callers="{fuzzer: {token_env: FUZZER_TOKEN, apps: [demo], allow: ['* /neuopenapi/*']}}",
    )
    gateway = await start_gateway(config, env={"FUZZER_TOKEN": TOKEN})
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{gateway.url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        *(("--max-examples", EXAMPLES) if EXAMPLES else ()),
        "--seed",
        SEED,
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Its example database and reports stay out of the checkout.
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks",
            "NEU_SANDBOX_URL": gateway.sandbox_url,
        },
    )
    async with asyncio.timeout(RUN_LIMIT_S):
        output, _ = await process.communicate()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-20000:]
    assert "No issues found" in report, report[-5000:]
    # The stateful phase ran, and followed every link of the story.
    assert "API Links:    5 covered / 5 selected / 5 total" in report, report[-5000:]
