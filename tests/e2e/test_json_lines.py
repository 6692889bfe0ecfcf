"""`serve` with JSON logs, as a log pipeline reads it: every line it writes is a JSON object,
the ones that end it too; and the access line of a call names its trace, peer and client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import __version__
from tests.support.paths import SANDBOX_ECHO
from tests.support.platform_double import SECRET
from tests.support.processes import GATEWAY_COMMAND, StartGateway, neu_gateway, write_config

pytestmark = pytest.mark.e2e

ENV = {"NEU_SECRET_DEMO": SECRET}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def records(result_text: str) -> list[dict[str, Any]]:
    """Every line parsed as a JSON object; a line that is not one fails the test."""
    lines = result_text.splitlines()
    assert lines, "something was written"
    parsed = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}\nin:\n{result_text}") from None
        assert isinstance(record, dict), line
        assert {"time", "level", "logger"} <= record.keys(), line
        parsed.append(record)
    return parsed


def errors(found: list[dict[str, Any]]) -> list[str]:
    return [record["message"] for record in found if record["level"] == "ERROR"]


async def test_a_taken_port_is_a_json_error_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, logging="{format: json}")
        config.write_text(config.read_text().replace("port: 0}", f"port: {port}}}", 1))
        result = await neu_gateway("serve", "-c", str(config), env=ENV)
    assert result.status == 1
    assert result.stdout == ""
    assert errors(records(result.stderr)) == [
        f"cannot start: listen: cannot listen on 127.0.0.1:{port}: the port is in use by "
        "another process (stop it, or change listen)"
    ]


async def test_an_invalid_config_that_names_json_is_one_json_error_and_exit_2(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path, logging="{format: json}", timeout="{total_s: 3}", pid_file="[a, b]"
    )
    result = await neu_gateway("serve", "-c", str(config), env=ENV)
    assert result.status == 2
    [message] = errors(records(result.stderr))
    assert message.startswith(f"invalid config {config}: ")
    assert "timeout: unknown option; did you mean `timeouts`?" in message
    assert "pid_file: " in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(None, "no config file at", id="no file"),
        pytest.param("apps: [\n", "not valid YAML at line 2", id="not YAML"),
    ],
)
async def test_a_config_read_too_little_to_name_a_format_follows_the_logs_default(
    tmp_path: Path, text: str | None, problem: str
) -> None:
    """Its stderr is a pipe here, not a terminal: JSON, as the logs would be."""
    config = tmp_path / "gateway.yaml"
    if text is not None:
        config.write_text(text)
    result = await neu_gateway("serve", "-c", str(config), env=ENV)
    assert result.status == 2
    [message] = errors(records(result.stderr))
    assert problem in message


async def test_a_config_that_names_text_is_reported_in_text(tmp_path: Path) -> None:
    config = write_config(tmp_path, logging="{format: text}", timeout="{total_s: 3}")
    result = await neu_gateway("serve", "-c", str(config), env=ENV)
    assert result.status == 2
    assert result.stderr.splitlines() == [
        f"neu-gateway: invalid config {config}:",
        "  timeout: unknown option; did you mean `timeouts`?",
    ]


async def test_serving_writes_only_json_lines_from_start_to_stop(tmp_path: Path) -> None:
    config = write_config(tmp_path, logging="{format: json}", shutdown="{drain_s: 0}")
    process = await asyncio.create_subprocess_exec(
        *GATEWAY_COMMAND,
        "serve",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **ENV},
    )
    assert process.stderr is not None
    written: list[str] = []
    try:
        async with asyncio.timeout(30):
            while "neu-gateway listening on" not in (written or [""])[-1]:
                line = (await process.stderr.readline()).decode()
                assert line, "".join(written)
                written.append(line)
        [start] = records(written[-1])
        url = start["message"].split()[3]
        assert start["message"] == f"neu-gateway listening on {url} (version {__version__})"
        async with aiohttp.ClientSession() as session:
            headers = {
                "traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01",
                "User-Agent": "orders/2.1 (e2e)",
            }
            async with session.get(url + SANDBOX_ECHO, headers=headers) as response:
                assert response.status == 200
        process.send_signal(signal.SIGTERM)
        stdout, rest = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert stdout == b""
    found = records("".join(written) + rest.decode())
    [access] = [record for record in found if record["logger"] == "neu_gateway.access"]
    assert access["trace_id"] == TRACE_ID
    assert access["remote"] == "127.0.0.1"
    assert access["user_agent"] == "orders/2.1 (e2e)"


async def test_a_text_access_line_names_the_trace_the_peer_and_the_client(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(write_config(tmp_path))
    assert f"neu-gateway listening on {gateway.url} (version {__version__})" in gateway.log
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            gateway.url + SANDBOX_ECHO,
            headers={"traceparent": "garbage", "User-Agent": "cron job"},
        ) as response,
    ):
        assert response.status == 200
    await gateway.wait_for_log("neu_gateway.access")
    [line] = [line for line in gateway.log_lines if "neu_gateway.access" in line]
    trace_id = line.split(" trace_id=")[1].split()[0]
    assert len(trace_id) == 32
    assert trace_id != "0" * 32
    assert line.endswith(f'trace_id={trace_id} remote=127.0.0.1 user_agent="cron job"')
