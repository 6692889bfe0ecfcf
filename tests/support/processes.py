"""The gateway as its users run it: the `neu-gateway` command in its own process (a plugin)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.support.platform_double import APPID, SECRET

STARTUP_TIMEOUT_S = 30
ENV_SECRET = {"NEU_SECRET_DEMO": SECRET}
GATEWAY_COMMAND = (sys.executable, "-m", "gateway")
# The address ends at a space, or at the closing quote of a JSON log line.
_LISTENING = re.compile(r"(neu-gateway|sandbox) listening on (http://[^\s\"]+)")


@dataclass
class CommandResult:
    status: int
    stdout: str
    stderr: str


async def run_command(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> CommandResult:
    """Run a command to the end (the event loop keeps serving while it runs)."""
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return CommandResult(process.returncode, stdout.decode(), stderr.decode())


async def neu_gateway(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> CommandResult:
    return await run_command(sys.executable, "-m", "gateway", *args, env=env, cwd=cwd)


def write_config(
    directory: Path, upstream: str = "sandbox", app_callbacks: str | None = None, **extra: str
) -> Path:
    """A gateway.yaml for one demo app; the embedded sandbox (on a free port) by default.
    `extra` adds top-level settings, or replaces the timeouts and sandbox given here."""
    settings = {
        "timeouts": "{connect_s: 2, total_s: 5}",
        "sandbox": "{listen: {port: 0}, notify_backoff_s: 0.05}",
        **extra,
    }
    lines = [
        "listen: {host: 127.0.0.1, port: 0}",
        "apps:",
        "  demo:",
        f"    appid: {APPID}",
        "    secret_env: NEU_SECRET_DEMO",
        f"    upstream: {upstream}",
        *([f"    callbacks: {app_callbacks}"] if app_callbacks else []),
        *(f"{key}: {value}" for key, value in settings.items()),
    ]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class GatewayProcess:
    process: asyncio.subprocess.Process
    ready_when: str = "neu-gateway"
    url: str = ""
    sandbox_url: str = ""
    log_lines: list[str] = field(default_factory=list)
    listening: asyncio.Future[str] = field(default_factory=asyncio.Future)
    new_line: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    @property
    def callbacks_url(self) -> str:
        """Where its callbacks listener listens, as its log says."""
        match = re.search(r"callbacks listening on (http://\S+)", self.log)
        assert match, self.log
        return match.group(1)

    def log_since(self, mark: int) -> str:
        """The log from line `mark` on (a `len(log_lines)` taken earlier)."""
        return "\n".join(self.log_lines[mark:])

    async def wait_for_count(
        self, text: str, count: int, timeout_s: float = 10, since: int = 0
    ) -> None:
        """Returns once `text` shows on `count` lines of the log (from line `since` on)."""

        def seen() -> int:
            return sum(text in line for line in self.log_lines[since:])

        async def shown() -> None:
            async with self.new_line:
                await self.new_line.wait_for(lambda: seen() >= count)

        try:
            async with asyncio.timeout(timeout_s):
                await shown()
        except TimeoutError:
            raise AssertionError(f"{text!r} logged {seen()} times, not {count}") from None

    async def wait_for_log(self, text: str, timeout_s: float = 10, since: int = 0) -> None:
        """Returns once `text` shows in the log (from line `since` on: a process shared by
        several tests may have logged it for an earlier one); each new line wakes the check."""

        async def shown() -> None:
            async with self.new_line:
                await self.new_line.wait_for(lambda: text in self.log_since(since))

        try:
            async with asyncio.timeout(timeout_s):
                await shown()
        except TimeoutError:
            raise AssertionError(f"{text!r} never logged:\n{self.log}") from None


async def _drain(gateway: GatewayProcess, stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        async with gateway.new_line:
            gateway.log_lines.append(text)
            gateway.new_line.notify_all()
        match = _LISTENING.search(text)
        if match and match.group(1) == "sandbox":
            gateway.sandbox_url = match.group(2)
        if match and match.group(1) == gateway.ready_when and not gateway.listening.done():
            gateway.listening.set_result(match.group(2))
    if not gateway.listening.done():
        gateway.listening.set_exception(AssertionError(f"gateway exited at start:\n{gateway.log}"))


StartGateway = Callable[..., Awaitable[GatewayProcess]]
StartCommand = Callable[..., Awaitable[GatewayProcess]]


@asynccontextmanager
async def command_starter() -> AsyncIterator[StartCommand]:
    """Starts `python -m gateway --log-level DEBUG ARGS...`; returns once it says it listens.

    The processes are stopped with SIGINT on leaving (SIGTERM would drain first).
    """
    started: list[tuple[GatewayProcess, asyncio.Task[None]]] = []

    async def start(
        *args: str, ready_when: str = "neu-gateway", env: dict[str, str] | None = None
    ) -> GatewayProcess:
        process = await asyncio.create_subprocess_exec(
            *GATEWAY_COMMAND,
            "--log-level",
            "DEBUG",
            # The tests read the log as text; the JSON format has tests of its own.
            "--log-format",
            "text",
            *args,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NEU_SECRET_DEMO": SECRET, **(env or {})},
        )
        assert process.stderr is not None
        gateway = GatewayProcess(process, ready_when)
        drain = asyncio.create_task(_drain(gateway, process.stderr))
        started.append((gateway, drain))
        gateway.url = await asyncio.wait_for(gateway.listening, STARTUP_TIMEOUT_S)
        return gateway

    try:
        yield start
    finally:
        for gateway, drain in started:
            if gateway.process.returncode is None:
                gateway.process.send_signal(signal.SIGINT)
                await asyncio.wait_for(gateway.process.wait(), 20)
            await drain


@pytest.fixture
async def start_command() -> AsyncIterator[StartCommand]:
    """Starts the gateway's command as a process (command_starter), stopped after the test."""
    async with command_starter() as start:
        yield start


@pytest.fixture
def start_gateway(start_command: StartCommand) -> StartGateway:
    """Starts `neu-gateway serve -c CONFIG`."""

    async def start(
        config: Path, env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()
    ) -> GatewayProcess:
        return await start_command("serve", "-c", str(config), *extra_args, env=env)

    return start


async def hang_at_sandbox(
    session: aiohttp.ClientSession, gateway: GatewayProcess, path: str
) -> None:
    """Makes the embedded sandbox hold every request to `path` until its faults are cleared."""
    faults = gateway.sandbox_url + "/sandbox/faults"
    async with session.post(faults, data={"path": path, "hang": "true"}) as response:
        assert response.status == 200


async def until_held(session: aiohttp.ClientSession, gateway: GatewayProcess, count: int) -> None:
    """Returns once `count` requests are held at the embedded sandbox."""
    for _ in range(1000):
        async with session.get(gateway.sandbox_url + "/sandbox/stats") as response:
            if (await response.json())["response"]["hanging"] == count:
                return
        await asyncio.sleep(0.01)  # wait-ok: polls the sandbox's count of held requests
    raise AssertionError(f"{count} requests never all reached the sandbox")
