"""The gateway as a real process under attack, and the measures of whether it held.

Each test starts `neu-gateway serve` with the embedded sandbox and the callbacks listener,
sends hostile input from raw sockets, and checks three things: the answer (a 4xx envelope,
or the connection closed), the process's peak memory (VmHWM in /proc), and that both
listeners kept answering within a second while the abuse went on.

A gateway takes over a second to start, so the tests of a module that need no settings of
their own share one (`target`): each test measures from its own start (the peak memory is
reset as the abuse begins, the log is read from the test's first line), and the module's
tests run on one event loop, the one its process is watched from.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from yarl import URL

from tests.support.paths import TOKEN, TRADE
from tests.support.processes import GatewayProcess, StartCommand, command_starter, write_config


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test here runs the gateway as a process: they belong with the end-to-end tests
    # (a conftest's own pytestmark would mark nothing). They measure liveness and memory, so
    # they run alone, not beside other tests on the same cores.
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)
            # A module whose tests run a command to its end and read the command's own peak
            # memory, with a generous deadline, measures nothing other tests could disturb.
            if not getattr(item.module, "BESIDE_OTHERS", False):
                item.add_marker(pytest.mark.alone)
            marker = item.get_closest_marker("asyncio")
            if marker is None or marker.kwargs.get("loop_scope") != "module":
                # The processes are started and watched on the module's loop (start_command
                # below): a test on a loop of its own would wait on them forever.
                raise pytest.UsageError(
                    f"{item.nodeid}: its module needs "
                    'pytestmark = pytest.mark.asyncio(loop_scope="module")'
                )


LIVENESS_BOUND_S = 1.0
HEADER_TIMEOUT_S = 1.0
BODY_IDLE_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 48
_CALLBACKS = re.compile(r"callbacks listening on (http://\S+)")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def error(self) -> str:
        return str(self.body.get("error"))


@dataclass
class Target:
    """A running gateway: its two listeners, its sandbox, and its process."""

    process: GatewayProcess
    url: str
    callbacks_url: str
    sandbox_url: str
    # The first line of the log that is the current test's (the process may be shared).
    mark: int = 0

    @property
    def pid(self) -> int:
        return self.process.process.pid

    @property
    def port(self) -> int:
        return URL(self.url).port or 0

    @property
    def sandbox_port(self) -> int:
        return URL(self.sandbox_url).port or 0

    @property
    def callbacks_port(self) -> int:
        return URL(self.callbacks_url).port or 0

    def memory_kb(self, field_name: str = "VmHWM") -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None, status
        return int(match.group(1))

    def reset_peak_memory(self) -> None:
        """Brings the peak (VmHWM) down to the memory in use now (VmRSS): an earlier test's
        peak in a shared process would hide this one's growth below it."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    @asynccontextmanager
    async def under_abuse(
        self, max_growth_mb: float, liveness_bound_s: float = LIVENESS_BOUND_S
    ) -> AsyncIterator[Liveness]:
        """Probes both listeners throughout; afterwards, checks they kept answering (each
        within liveness_bound_s) and that the peak memory grew by at most max_growth_mb over
        the memory in use as the abuse began."""
        self.reset_peak_memory()
        before = self.memory_kb()
        async with Liveness([f"{self.url}/healthz", f"{self.callbacks_url}/healthz"]) as probe:
            yield probe
        probe.assert_answered(liveness_bound_s)
        grown_mb = (self.memory_kb() - before) / 1024
        assert grown_mb <= max_growth_mb, f"peak memory grew by {grown_mb:.1f} MB"
        assert self.process.process.returncode is None, "the gateway died"


@dataclass
class Liveness:
    """Asks each URL in turn, back to back, and records the slowest answer."""

    urls: list[str]
    slowest_s: float = 0.0
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Liveness:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        for url in self.urls:
            # Opens the pooled connections before the abuse starts.
            await self._ask(url)
        self._task = asyncio.create_task(self._probe())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        assert self._session is not None
        await self._task
        await self._session.close()

    async def _probe(self) -> None:
        while not self._stop.is_set():
            for url in self.urls:
                await self._ask(url)

    async def _ask(self, url: str) -> None:
        assert self._session is not None
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                async with self._session.get(url) as response:
                    await response.read()
                break
            except aiohttp.ServerDisconnectedError:
                # An idle kept-alive connection may be closed to make room at the connection
                # cap; like any HTTP client, the probe asks again on a new one.
                if attempt == 2:
                    self.failures.append(f"{url}: ServerDisconnectedError twice")
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.failures.append(f"{url}: {type(exc).__name__}")
                break
        self.slowest_s = max(self.slowest_s, time.monotonic() - started)
        self.answered += 1

    def assert_answered(self, bound_s: float = LIVENESS_BOUND_S) -> None:
        assert not self.failures, self.failures
        assert self.answered > len(self.urls), "the probe never ran during the abuse"
        assert self.slowest_s < bound_s, f"slowest answer took {self.slowest_s:.2f} s"


async def exchange(port: int, data: bytes, timeout_s: float = 15) -> Answer | None:
    """Sends the bytes and reads one answer; None when the server closed without one.

    The answer is read while the bytes are still being sent: the gateway may refuse a body
    before it has arrived, and close.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def push() -> None:
        try:
            writer.write(data)
            await writer.drain()
        except ConnectionError:
            pass

    pusher = asyncio.create_task(push())
    try:
        async with asyncio.timeout(timeout_s):
            return await read_answer(reader)
    finally:
        pusher.cancel()
        writer.close()


async def read_answer(reader: asyncio.StreamReader) -> Answer | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines if line)
    }
    payload = await reader.readexactly(int(headers.get("content-length", "0")))
    body = json.loads(payload) if payload else {}
    return Answer(int(status_line.split()[1]), headers, body)


def request_bytes(
    method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    framed = {"transfer-encoding", "content-length"} & {name.lower() for name in headers or {}}
    if body and not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def assert_refused(answer: Answer | None, status: int, code: str) -> None:
    assert answer is not None, "the connection closed without an answer"
    assert (answer.status, answer.error) == (status, code), answer
    assert answer.body["responseHeader"]["status"] == status


StartTarget = Callable[..., Awaitable[Target]]


async def launch(
    start: StartCommand,
    directory: Path,
    env: dict[str, str] | None = None,
    limits: dict[str, float] | None = None,
    **extra: str,
) -> Target:
    """Starts a gateway with short timeouts, the embedded sandbox and the callbacks listener."""
    chosen = {
        "header_timeout_s": HEADER_TIMEOUT_S,
        "body_idle_timeout_s": BODY_IDLE_TIMEOUT_S,
        "max_connections": MAX_CONNECTIONS,
        **(limits or {}),
    }
    settings = {
        "limits": "{" + ", ".join(f"{key}: {value}" for key, value in chosen.items()) + "}",
        "callbacks": f"{{listen: {{port: 0}}, store: 'sqlite:///{directory}/outbox.db'}}",
        **extra,
    }
    config = write_config(directory, app_callbacks="{verify_sign: true}", **settings)
    process = await start("serve", "-c", str(config), env=env)
    match = _CALLBACKS.search(process.log)
    assert match is not None, process.log
    return Target(process, process.url, match.group(1), process.sandbox_url)


@pytest_asyncio.fixture(loop_scope="module")
async def start_command() -> AsyncIterator[StartCommand]:
    """As tests.support.processes's, on the module's loop (where the shared target runs)."""
    async with command_starter() as start:
        yield start


@pytest.fixture
def start_target(start_command: StartCommand, tmp_path: Path) -> StartTarget:
    """Starts a gateway of the test's own (launch), stopped after the test."""

    async def start(
        env: dict[str, str] | None = None, limits: dict[str, float] | None = None, **extra: str
    ) -> Target:
        return await launch(start_command, tmp_path, env, limits, **extra)

    return start


@asynccontextmanager
async def shared_target(
    tmp_path_factory: pytest.TempPathFactory, limits: dict[str, float] | None = None
) -> AsyncIterator[Target]:
    """A gateway for the tests of a module (launch), stopped after the last of them."""
    async with command_starter() as start:
        yield await launch(start, tmp_path_factory.mktemp("gateway"), limits=limits)


async def for_this_test(target: Target) -> Target:
    """The shared gateway, alive, as a fresh one would be: the earlier tests' connections
    closed and their requests answered (so they take no share of this test's time or
    connections), with its log read from here on."""
    assert target.process.process.returncode is None, f"the gateway died:\n{target.process.log}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        try:
            async with asyncio.timeout(15):
                # The scrape's own connection is the one open on the gateway's listener.
                while await open_elsewhere(session, target):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)  # wait-ok: polls the gateway's counts
        except TimeoutError:
            raise AssertionError(
                f"an earlier test left {await open_elsewhere(session, target)} open"
            ) from None
    target.mark = len(target.process.log_lines)
    return target


async def open_elsewhere(session: aiohttp.ClientSession, target: Target) -> dict[str, float]:
    """The connections open on the gateway's and callbacks' listeners (not counting the
    scrape's own) and the requests in flight, those that are not zero."""
    async with session.get(target.url + "/metrics") as response:
        text = await response.text()
    counts = {
        'neu_gateway_connections{listener="egress"}': -1.0,
        'neu_gateway_connections{listener="callbacks"}': 0.0,
    }
    for line in text.splitlines():
        name, _, count = line.rpartition(" ")
        if name in counts:
            counts[name] += float(count)
        elif name.startswith("neu_gateway_requests_in_flight{"):
            counts[name] = float(count)
    return {name: count for name, count in counts.items() if count}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    async with shared_target(tmp_path_factory) as target:
        yield target


@pytest_asyncio.fixture(loop_scope="module")
async def target(module_target: Target) -> Target:
    """A gateway with the default settings, shared by the module's tests (for_this_test)."""
    return await for_this_test(module_target)


async def processing_trade(target: Target) -> str:
    """A trade the sandbox holds in processing (status 1), made through the gateway."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    async def call(port: int, method: str, path: str, body: str = "") -> dict[str, Any]:
        answer = await exchange(port, request_bytes(method, path, body.encode(), form))
        assert answer is not None
        assert answer.body["responseHeader"]["status"] == 200, answer
        response: dict[str, Any] = answer.body["response"]
        return response

    login = await call(target.sandbox_port, "POST", "/sandbox/login", "user=13800138000")
    token = await call(
        target.port,
        "POST",
        TOKEN,
        f"code={login['code']}&grantType=authorization_code&scope=user.info",
    )
    trade = await call(
        target.port,
        "POST",
        TRADE,
        f"outTradeNo=o-{time.time_ns()}&amount=100&currency=USD&openId={login['openId']}"
        "&notifyUrl=http%3A%2F%2F127.0.0.1%3A9%2Fnowhere",
    )
    assert token["accessToken"]
    return str(trade["tradeNo"])
