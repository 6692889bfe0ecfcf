"""The gateway's own tradedetail calls, and where an app's calls go."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict

from gateway.config.schema import PoolConfig
from gateway.core.platform import TRADE_DETAIL_PATH
from gateway.metrics import Metrics
from gateway.upstream.client import CallPolicy, Upstream
from gateway.upstream.details import answer_detail, base_url_for, trade_detail
from gateway.upstream.sessions import Sessions
from gateway.upstream.transport import Answer
from tests.support.clock import MutableClock
from tests.support.platform_double import PlatformDouble
from tests.upstream.helpers import app_for


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    sessions = Sessions(PoolConfig(), 1.0, 5.0)
    yield Upstream(sessions, 1 << 20, Metrics(), MutableClock(), CallPolicy())
    await sessions.close()


async def test_a_trade_detail_is_a_signed_get_of_the_trade(
    upstream: Upstream, platform: PlatformDouble, platform_url: str
) -> None:
    answer = await trade_detail(upstream, platform_url, app_for(platform_url), "T-1")
    assert answer.status == 200
    received = platform.last
    assert (received.method, received.path) == ("GET", TRADE_DETAIL_PATH)
    assert received.params["tradeNo"] == "T-1"
    assert received.sign_ok


def test_an_apps_calls_go_to_its_upstream_or_the_sandboxs_address() -> None:
    own = app_for("https://platform.test")
    assert base_url_for({"demo": "http://127.0.0.1:9"}, own) == "https://platform.test"
    sandbox = app_for("sandbox")
    assert base_url_for({"demo": "http://127.0.0.1:9"}, sandbox) == "http://127.0.0.1:9"


def envelope(status: int, response: object) -> bytes:
    return json.dumps(
        {"responseHeader": {"status": status, "msg": "m"}, "response": response}
    ).encode()


@pytest.mark.parametrize(
    ("http_status", "body", "detail"),
    [
        pytest.param(
            200, envelope(200, {"transactionStatus": 2}), {"transactionStatus": 2}, id="ok"
        ),
        pytest.param(200, envelope(404, {"transactionStatus": 2}), None, id="platform refused"),
        pytest.param(502, envelope(200, {"transactionStatus": 2}), None, id="HTTP error"),
        pytest.param(200, envelope(200, None), None, id="no detail"),
        pytest.param(200, b"<html>", None, id="not JSON"),
    ],
)
def test_the_detail_is_read_only_from_a_successful_answer(
    http_status: int, body: bytes, detail: object
) -> None:
    assert answer_detail(Answer(http_status, CIMultiDict(), body)) == detail
