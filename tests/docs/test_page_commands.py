"""The commands the API reference and the client snippets tell a reader to run by hand, run as
written against a live gateway and its embedded sandbox: generating a Python client (twice, as
a reader who comes back does), its usage example, and the snippet tried by hand."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.docs.pages import REPO, page, section
from tests.docs.test_clients import login_code
from tests.support.processes import StartGateway, run_command, write_config

pytestmark = pytest.mark.e2e
VENV_BIN = Path(sys.executable).parent
EXAMPLE_SERVER = "http://neu-gateway.internal:8080"


def block(text: str, language: str) -> str:
    """The first fenced block of the language in the text."""
    match = re.search(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert match is not None, language
    return match.group(1)


async def test_the_generated_client_is_made_twice_and_its_example_runs(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(write_config(tmp_path / "gateway"))
    generating = section(page("api.md"), "## Generating a client")
    commands = [
        line
        for line in block(generating, "sh").splitlines()
        # Java's generator is not among the test tools; the Python one stands for both.
        if not line.startswith("openapi-generator-cli")
    ]
    # The repository's config, as the page says; the address the gateway of the test is at.
    script = "\n".join(commands).replace("$PWD/.venv/bin", str(VENV_BIN))
    script = script.replace(".venv/bin/", f"{VENV_BIN}/").replace(
        "gateway.yaml", str(REPO / "gateway.yaml")
    )
    script = script.replace(EXAMPLE_SERVER, gateway.url)
    work = tmp_path / "reader"
    work.mkdir()
    for _ in range(2):
        result = await run_command("bash", "-euo", "pipefail", "-c", script, cwd=work)
        assert result.status == 0, result.stderr
    assert "ruff is not in PATH" not in result.stdout + result.stderr

    example = block(generating, "python").replace(EXAMPLE_SERVER, gateway.url)
    given = f"code = {await login_code(gateway)!r}\ncaller_token = 'any'\n"
    result = await run_command(
        sys.executable,
        "-c",
        given + example,
        env={"PYTHONPATH": str(work / "neu-gateway-client")},
        cwd=work,
    )
    assert result.status == 0, result.stderr
    assert re.fullmatch(r"\S+ 13800138000\n", result.stdout), result.stdout


async def test_the_client_snippet_tried_by_hand_runs_against_the_gateway(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(write_config(tmp_path))
    script = block(section(page("clients.md"), "# Client snippets"), "sh")
    script = re.sub(r"(?m)^GW=.*$", f"GW={gateway.url}; SB={gateway.sandbox_url}", script)
    result = await run_command("bash", "-euo", "pipefail", "-c", script, cwd=REPO)
    assert result.status == 0, result.stderr
    assert re.fullmatch(r"openId=\S+ tradeNo=\S+ status=\d+\n", result.stdout), result.stdout
