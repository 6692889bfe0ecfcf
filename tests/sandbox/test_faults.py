"""Faults on OpenAPI paths: a status, a delay, a reset connection, a hang; set and cleared by
/sandbox/faults, each logged as what it did."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.core.endpoints import ACCESS_TOKEN, TRADE_CLOSE, TRADE_DETAIL
from gateway.sandbox.faults import FAULTS, Fault, Faults
from tests.sandbox.conftest import header
from tests.support.sandbox_client import signed

Client = TestClient[Any, Any]
DETAIL, CLOSE, TOKEN = TRADE_DETAIL.path, TRADE_CLOSE.path, ACCESS_TOKEN.path


def test_a_fault_for_some_times_is_gone_after_them() -> None:
    faults = Faults()
    faults.by_path[DETAIL] = Fault(status=500, times=2)
    faults.by_path[CLOSE] = Fault(status=503)
    assert [faults.take(DETAIL) is not None for _ in range(3)] == [True, True, False]
    assert [faults.take(CLOSE) is not None for _ in range(3)] == [True, True, True]
    assert faults.take(TOKEN) is None
    faults.clear(CLOSE)
    assert faults.by_path == {}


async def test_clearing_releases_every_hanging_request() -> None:
    faults = Faults()
    hanging = [asyncio.create_task(faults.hang()) for _ in range(3)]
    await asyncio.sleep(0)  # wait-ok: lets the requests start hanging
    assert faults.hanging == 3
    faults.clear(DETAIL)
    async with asyncio.timeout(5):
        await asyncio.gather(*hanging)
    assert faults.hanging == 0


async def test_a_fault_status_until_cleared(sandbox: Client) -> None:
    response = await sandbox.post("/sandbox/faults", json={"path": DETAIL, "status": 503})
    assert header(await response.json()) == (200, "OK")
    assert (await response.json())["response"] == {
        "path": DETAIL,
        "delay_s": 0.0,
        "status": 503,
        "reset": False,
        "hang": False,
        "times": None,
    }
    faulted = await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))
    assert faulted.status == 503
    assert header(await faulted.json()) == (503, "fault injected by /sandbox/faults")
    await sandbox.delete("/sandbox/faults")
    assert (await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))).status == 200


async def test_a_fault_for_a_number_of_times(sandbox: Client) -> None:
    await sandbox.post("/sandbox/faults", data={"path": DETAIL, "status": "500", "times": "1"})
    assert (await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))).status == 500
    assert (await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))).status == 200


async def test_a_reset_drops_the_connection(sandbox: Client) -> None:
    await sandbox.post("/sandbox/faults", data={"path": CLOSE, "reset": "true"})
    with pytest.raises(aiohttp.ClientError):
        await sandbox.post(CLOSE, data=signed({"tradeNo": "T"}))


async def test_a_hang_lasts_until_its_fault_is_cleared(sandbox: Client) -> None:
    await sandbox.post("/sandbox/faults", data={"path": DETAIL, "hang": "1"})
    pending = asyncio.ensure_future(sandbox.get(DETAIL, params=signed({"tradeNo": "T"})))
    faults = sandbox.app[FAULTS]
    for _ in range(500):
        if faults.hanging:
            break
        await asyncio.sleep(0.01)  # wait-ok: polls for the request to hang
    assert faults.hanging == 1
    assert not pending.done()
    assert (await (await sandbox.get("/sandbox/stats")).json())["response"]["hanging"] == 1
    await sandbox.delete("/sandbox/faults", params={"path": DETAIL})
    assert (await pending).status == 200


async def test_a_delay(sandbox: Client) -> None:
    await sandbox.post("/sandbox/faults", data={"path": DETAIL, "delay_s": "0.2"})
    started = time.monotonic()
    response = await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))
    assert time.monotonic() - started >= 0.2
    assert header(await response.json())[0] == 404, "then answered as usual"


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        pytest.param(
            {"path": "/elsewhere"},
            "path is required: an OpenAPI path such as /neuopenapi/...",
            id="path",
        ),
        pytest.param(
            {"path": DETAIL, "status": "abc"},
            "delay_s must be a number; status and times whole numbers",
            id="status",
        ),
        pytest.param(
            {"path": DETAIL, "delay_s": "soon"},
            "delay_s must be a number; status and times whole numbers",
            id="delay",
        ),
    ],
)
async def test_a_fault_refused(sandbox: Client, data: dict[str, str], msg: str) -> None:
    response = await sandbox.post("/sandbox/faults", data=data)
    assert (response.status, header(await response.json())) == (400, (400, msg))


async def test_a_call_a_fault_answers_is_logged_as_a_fault(sandbox: Client) -> None:
    await sandbox.post("/sandbox/faults", data={"path": DETAIL, "status": "503", "times": "1"})
    await sandbox.post("/sandbox/faults", data={"path": CLOSE, "reset": "1", "delay_s": "0.01"})
    await sandbox.post("/sandbox/faults", data={"path": TOKEN, "delay_s": "0.01", "times": "1"})
    await sandbox.get(DETAIL, params=signed({"tradeNo": "T"}))
    with pytest.raises(aiohttp.ClientError):
        await sandbox.post(CLOSE, data=signed({"tradeNo": "T"}))
    await sandbox.post(TOKEN, data=signed({"code": "c", "grantType": "x", "scope": "user.info"}))
    entries = (await (await sandbox.get("/sandbox/requests")).json())["response"]["requests"]
    assert [(e["endpoint"], e["verdict"], e["status"], e["msg"]) for e in entries] == [
        (TOKEN, "refused", 400, entries[0]["msg"]),
        (CLOSE, "fault", 0, "fault injected by /sandbox/faults: delay 0.01 s, connection reset"),
        (DETAIL, "fault", 503, "fault injected by /sandbox/faults: HTTP 503"),
    ]
