"""Upstream, the policy over the transports, against a small platform on loopback that
answers from a script and records what it got: retries, the breaker, the platform's clock,
the transport each call takes and the headers that come back."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from gateway.config.model import App
from gateway.config.schema import PoolConfig
from gateway.core.errors import UpstreamBadResponse, UpstreamUnavailable, UpstreamUnreachable
from gateway.core.headers import ATTEMPTS_HEADER
from gateway.core.params import form_encoded
from gateway.metrics import Metrics
from gateway.upstream.call import Call
from gateway.upstream.client import CallPolicy, Upstream
from gateway.upstream.sessions import Sessions
from gateway.upstream.transport import Body
from tests.support.clock import MutableClock
from tests.support.platform_double import SECRET, reference_sign
from tests.support.ports import free_port
from tests.upstream.helpers import app_for

PATH = "/neuopenapi/x"
OK = {"responseHeader": {"status": 200, "msg": "OK"}, "response": {}}
Reply = Callable[[int], web.Response]


@dataclass
class Platform:
    """Answers the n-th request (from 1) with reply(n); keeps each request's params."""

    reply: Reply
    url: str = ""
    received: list[dict[str, str]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        params = dict(parse_qsl(request.rel_url.raw_query_string))
        if request.method == "POST" and request.content_type != "multipart/form-data":
            params.update(parse_qsl((await request.read()).decode()))
        self.received.append(params)
        self.methods.append(request.method)
        self.content_types.append(request.content_type)
        return self.reply(len(self.received))


def answering(*statuses: int) -> Reply:
    """HTTP statuses in turn, the last one repeated."""

    def reply(n: int) -> web.Response:
        status = statuses[min(n, len(statuses)) - 1]
        return web.json_response(OK, status=status)

    return reply


@pytest.fixture
async def serve(aiohttp_server: Any) -> Callable[[Reply], Any]:
    async def start(reply: Reply) -> Platform:
        platform = Platform(reply)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", platform.handle)
        server = await aiohttp_server(app)
        platform.url = str(server.make_url("")).rstrip("/")
        return platform

    return start


@pytest.fixture
async def made() -> AsyncIterator[Callable[..., Upstream]]:
    sessions: list[Sessions] = []

    def make(
        max_response_bytes: int = 1 << 20,
        metrics: Metrics | None = None,
        report_sign_refusals: bool = True,
        **policy: Any,
    ) -> Upstream:
        settings = {"backoff_s": 0.001, "max_backoff_s": 0.002, "total_s": 5.0, **policy}
        sessions.append(Sessions(PoolConfig(), 1.0, settings["total_s"]))
        return Upstream(
            sessions[-1],
            max_response_bytes,
            metrics or Metrics(),
            MutableClock(),
            CallPolicy(**settings),
            report_sign_refusals=report_sign_refusals,
        )

    yield make
    for each in sessions:
        await each.close()


def call(app: App, base: str, method: str = "GET", upload: bool = False) -> Call:
    def build(signed: dict[str, str]) -> tuple[URL, Body]:
        if method == "GET":
            return URL(f"{base}{PATH}?{form_encoded(signed)}", encoded=True), None
        if upload:
            writer = aiohttp.MultipartWriter("form-data")
            for name, value in signed.items():
                writer.append(value).set_content_disposition("form-data", name=name)
            return URL(f"{base}{PATH}", encoded=True), writer
        return URL(f"{base}{PATH}", encoded=True), form_encoded(signed).encode()

    headers: CIMultiDict[str] = CIMultiDict()
    if method == "POST" and not upload:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return Call(
        app=app,
        base_url=base,
        method=method,
        path=PATH,
        fields={"a": "1"},
        build=build,
        headers=headers,
    )


async def test_a_get_answered_503_is_asked_again_and_signed_afresh(serve: Any, made: Any) -> None:
    platform = await serve(answering(503, 200))
    answer = await made().call(call(app_for(platform.url), platform.url))
    assert (answer.status, answer.attempts) == (200, 2)
    for params in platform.received:
        assert params["sign"] == reference_sign(params, SECRET)


async def test_a_post_answered_503_is_not_asked_again(serve: Any, made: Any) -> None:
    platform = await serve(answering(503, 200))
    answer = await made().call(call(app_for(platform.url), platform.url, "POST"))
    assert (answer.status, answer.attempts) == (503, 1)
    assert len(platform.received) == 1


async def test_a_post_that_never_left_is_sent_again_and_the_attempts_are_told(made: Any) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UpstreamUnreachable) as raised:
        await made(attempts=3).call(call(app_for(base), base, "POST"))
    assert raised.value.unsent
    assert raised.value.headers[ATTEMPTS_HEADER] == "3"


async def test_an_answer_that_cannot_be_read_is_not_asked_again(serve: Any, made: Any) -> None:
    def too_large(n: int) -> web.Response:
        return web.Response(body=b"x" * 100, content_type="application/json")

    platform = await serve(too_large)
    with pytest.raises(UpstreamBadResponse):
        await made(max_response_bytes=10).call(call(app_for(platform.url), platform.url))
    assert len(platform.received) == 1


async def test_the_breaker_opens_after_failures_in_a_row_and_says_when_to_retry(
    serve: Any, made: Any
) -> None:
    platform = await serve(answering(500))
    upstream = made(attempts=1, breaker_failures=2, breaker_cooldown_s=30)
    app = app_for(platform.url)
    for _ in range(2):
        assert (await upstream.call(call(app, platform.url))).status == 500
    with pytest.raises(UpstreamUnavailable) as raised:
        await upstream.call(call(app, platform.url))
    assert raised.value.headers["Retry-After"] == "30"
    assert len(platform.received) == 2


async def test_a_timestamp_refusal_is_sent_again_on_the_platforms_clock(
    serve: Any, made: Any
) -> None:
    ahead_s = 600

    def reply(n: int) -> web.Response:
        headers = {"Date": email.utils.formatdate(time.time() + ahead_s, usegmt=True)}
        if n == 1:
            refusal = {"responseHeader": {"status": 400, "msg": "timestamp expired"}}
            return web.json_response(refusal, headers=headers)
        return web.json_response(OK, headers=headers)

    platform = await serve(reply)
    upstream = made()
    answer = await upstream.call(call(app_for(platform.url), platform.url, "POST"))
    assert answer.status == 200
    first, second = (int(params["timestamp"]) for params in platform.received)
    assert second - first == pytest.approx(ahead_s * 1000, abs=2500)
    assert upstream.offset_s(platform.url) == pytest.approx(ahead_s, abs=2.5)


async def test_each_call_takes_the_lean_client_unless_it_needs_aiohttps(
    serve: Any, made: Any
) -> None:
    platform = await serve(answering(200))
    upstream = made()
    sessions: Sessions = upstream._sessions
    app = app_for(platform.url)
    await upstream.call(call(app, platform.url))
    await upstream.call(call(app, platform.url, "POST"))
    assert sessions.aiohttp._sessions == {}
    assert (await upstream.call(call(app, platform.url, "POST", upload=True))).status == 200
    assert len(sessions.aiohttp._sessions) == 1
    assert platform.content_types == [
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ]


async def test_only_end_to_end_headers_come_back(serve: Any, made: Any) -> None:
    def reply(n: int) -> web.Response:
        headers = {"X-Neu-Cache": "hit", "Keep-Alive": "timeout=5", "X-Kept": "yes"}
        return web.Response(body=json.dumps(OK).encode(), headers=headers)

    platform = await serve(reply)
    answer = await made().call(call(app_for(platform.url), platform.url))
    assert answer.headers["X-Kept"] == "yes"
    for name in ("X-Neu-Cache", "Keep-Alive", "Content-Length"):
        assert name not in answer.headers


async def test_a_probe_is_one_unsigned_get_of_the_base_url(serve: Any, made: Any) -> None:
    platform = await serve(answering(404))
    answer = await made().probe(app_for(platform.url), platform.url)
    assert answer.status == 404
    assert platform.received == [{}]
    assert platform.methods == ["GET"]


def refusing(msg: str, http_status: int = 200) -> Reply:
    def reply(n: int) -> web.Response:
        refusal = {"responseHeader": {"status": 401, "msg": msg}, "response": None}
        return web.json_response(refusal, status=http_status)

    return reply


def sign_rejections(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("neu_gateway_sign_rejections_total", {"app": "demo"})


@pytest.mark.parametrize(
    ("msg", "http_status", "counted"),
    [
        pytest.param("sign error", 200, 1, id="a sign error in an HTTP 200 counts"),
        pytest.param("Invalid signature", 401, 1, id="a signature refused on the wire counts"),
        pytest.param("invalid accessToken: expired", 200, None, id="a refused token does not"),
    ],
)
async def test_each_refused_sign_is_counted_once_whatever_the_call(
    serve: Any, made: Any, msg: str, http_status: int, counted: float | None
) -> None:
    platform = await serve(refusing(msg, http_status))
    metrics = Metrics()
    upstream = made(metrics=metrics)
    answer = await upstream.call(call(app_for(platform.url), platform.url))
    assert answer.status == http_status
    assert len(platform.received) == 1  # a refusal is not asked again
    assert sign_rejections(metrics) == counted


async def test_a_probe_of_the_sign_counts_no_incident(serve: Any, made: Any) -> None:
    platform = await serve(refusing("sign error"))
    metrics = Metrics()
    upstream = made(metrics=metrics, report_sign_refusals=False)
    await upstream.call(call(app_for(platform.url), platform.url))
    assert sign_rejections(metrics) is None
