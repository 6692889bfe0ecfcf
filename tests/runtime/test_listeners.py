"""The one way a listener starts: its URL, or a StartError naming its config key, the runner
cleaned up either way."""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from gateway.config.schema import LimitsConfig, ListenConfig
from gateway.http.server import GuardedRunner
from gateway.runtime.listeners import (
    CannotStart,
    StartError,
    http_url,
    limits_for,
    listen_failure,
    sandbox_runner,
    start_listener,
)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (
            OSError(errno.EADDRINUSE, "address in use"),
            "the port is in use by another process (stop it, or change admin.listen)",
        ),
        (OSError(errno.EACCES, "asyncio's wording around it"), "Permission denied"),
        (OSError("no errno at all"), "no errno at all"),
        (OSError(-2, "Name or service not known"), "Name or service not known"),
    ],
    ids=["port in use", "the system's words", "no errno", "a name that does not resolve"],
)
def test_a_listen_failure_is_one_line_naming_the_key(exc: OSError, reason: str) -> None:
    failure = listen_failure("admin.listen", "127.0.0.1", 9090, exc)
    assert isinstance(failure, StartError)
    assert str(failure) == f"cannot start: admin.listen: cannot listen on 127.0.0.1:9090: {reason}"


class Recorded:
    """An app whose cleanup context says when it started and ended."""

    def __init__(self, fails_with: Exception | None = None) -> None:
        self.events: list[str] = []
        self.app = web.Application()
        self.app.router.add_get("/", self.hello)
        self.app.cleanup_ctx.append(self.context)
        self.fails_with = fails_with

    async def hello(self, request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        self.events.append("started")
        if self.fails_with is not None:
            raise self.fails_with
        yield
        self.events.append("ended")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port: int = taken.getsockname()[1]
        yield port


async def test_a_listener_starts_and_says_where() -> None:
    recorded = Recorded()
    runner = web.AppRunner(recorded.app)
    url = await start_listener(runner, ListenConfig(port=0), "listen")
    try:
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as session, session.get(url + "/") as response:
            assert await response.text() == "hello"
    finally:
        await runner.cleanup()
    assert recorded.events == ["started", "ended"]


async def test_an_ipv6_listener_says_where_with_its_address_in_brackets() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    recorded = Recorded()
    runner = web.AppRunner(recorded.app)
    try:
        url = await start_listener(runner, ListenConfig(host="::1", port=0), "listen")
    except StartError:
        pytest.skip("::1 cannot be bound on this host")
    try:
        assert url.startswith("http://[::1]:")
        async with aiohttp.ClientSession() as session, session.get(url + "/") as response:
            assert await response.text() == "hello"
    finally:
        await runner.cleanup()


def test_a_listeners_url_brackets_an_ipv6_address_only() -> None:
    assert http_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert http_url("::1", 8080) == "http://[::1]:8080"
    assert http_url("localhost", 0) == "http://localhost:0"


async def test_a_port_in_use_is_named_and_the_app_cleaned_up(taken_port: int) -> None:
    recorded = Recorded()
    runner = web.AppRunner(recorded.app)
    with pytest.raises(StartError) as failed:
        await start_listener(runner, ListenConfig(port=taken_port), "callbacks.listen")
    assert str(failed.value) == (
        f"cannot start: callbacks.listen: cannot listen on 127.0.0.1:{taken_port}: the port is "
        "in use by another process (stop it, or change callbacks.listen)"
    )
    assert recorded.events == ["started", "ended"]


@pytest.mark.parametrize(
    "cause",
    [
        CannotStart("callbacks.store: cannot open sqlite:///x (unable to open)"),
        OSError("callbacks.store: cannot open sqlite:///x (unable to open)"),
    ],
    ids=["a resource", "an OSError"],
)
async def test_an_app_that_cannot_start_is_a_start_error(cause: Exception) -> None:
    runner = web.AppRunner(Recorded(fails_with=cause).app)
    with pytest.raises(StartError) as failed:
        await start_listener(runner, ListenConfig(port=0), "listen")
    assert (
        str(failed.value)
        == "cannot start: callbacks.store: cannot open sqlite:///x (unable to open)"
    )
    assert runner.addresses == []


async def test_a_listener_the_app_owns_fails_its_start_unchanged(taken_port: int) -> None:
    """The sandbox listener the gateway's app starts, say: its key stays in the message."""
    inner = web.AppRunner(Recorded().app)

    async def starts_a_listener(app: web.Application) -> AsyncIterator[None]:
        await start_listener(inner, ListenConfig(port=taken_port), "sandbox.listen")
        yield

    outer = Recorded()
    outer.app.cleanup_ctx.append(starts_a_listener)
    with pytest.raises(StartError, match=r"^cannot start: sandbox\.listen: cannot listen on"):
        await start_listener(web.AppRunner(outer.app), ListenConfig(port=0), "listen")
    assert outer.events == ["started", "ended"]


async def test_shared_listeners_take_the_same_port() -> None:
    first, second = web.AppRunner(Recorded().app), web.AppRunner(Recorded().app)
    url = await start_listener(first, ListenConfig(port=0), "listen", shared=True)
    try:
        port = int(url.rsplit(":", 1)[1])
        assert await start_listener(second, ListenConfig(port=port), "listen", shared=True) == url
        await second.cleanup()
    finally:
        await first.cleanup()


async def test_the_sandbox_takes_header_lines_the_gateway_refuses() -> None:
    limits = LimitsConfig()
    long_header = {"X-Long": "x" * (limits.max_header_bytes + 1000)}
    sandbox = sandbox_runner(Recorded().app, limits)
    gateway = GuardedRunner(Recorded().app, limits_for(limits))
    statuses = []
    for runner in (sandbox, gateway):
        url = await start_listener(runner, ListenConfig(port=0), "listen")
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(url + "/", headers=long_header) as response,
            ):
                statuses.append(response.status)
        finally:
            await runner.cleanup()
    assert statuses == [200, 431]


def test_limits_for_takes_each_limit_from_the_config() -> None:
    limits = LimitsConfig(
        max_header_bytes=4096,
        header_timeout_s=3,
        keepalive_timeout_s=7,
        max_connections=11,
        body_idle_timeout_s=13,
    )
    guard = limits_for(limits)
    assert (
        guard.max_header_bytes,
        guard.header_timeout_s,
        guard.keepalive_timeout_s,
        guard.max_connections,
        guard.send_idle_timeout_s,
    ) == (4096, 3, 7, 11, 13)
