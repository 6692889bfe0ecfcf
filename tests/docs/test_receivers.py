"""The receiving programs of docs/receivers/, run as an order service runs them: a delivery the
gateway's worker signs is answered 2xx, and a forged, replayed or damaged one is refused 400.

Each program is started once per module (a JVM takes a second to start) with a fresh secret;
the tests send to it directly, or through a relay that records what the worker sent.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from gateway.callbacks.delivery import DeliveryPolicy, DeliveryWorker, Destination
from gateway.callbacks.outbox import DELIVERED, SqliteOutbox
from gateway.core.clock import SystemClock
from gateway.core.secrets import DEMO_SIGNING_SECRET
from gateway.core.webhooks import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SigningKey,
    signed_headers,
    signing_key,
    verify,
)
from tests.docs.pages import DOCS, page
from tests.support.waiting import until_answers

# One event loop for the module's tests that run the programs: they are started, and their
# output read, on it.
on_module_loop = pytest.mark.asyncio(loop_scope="module")
RECEIVERS = DOCS / "receivers"
PROGRAMS = {
    "python": [sys.executable, str(RECEIVERS / "receiver.py")],
    "java": ["java", str(RECEIVERS / "Receiver.java")],
    "node": ["node", str(RECEIVERS / "receiver.mjs")],
}
START_TIMEOUT_S = 30
_LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+)")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


SECRET, OTHER = new_secret(), new_secret()
KEY, OTHER_KEY = signing_key(SECRET), signing_key(OTHER)
# A trade's detail as the platform wrote it: its spacing and its UTF-8 are what was signed, so
# a receiver that hashed a re-serialised or re-encoded body would refuse it.
PAYLOAD = (
    '{"tradeNo": "cf6c814f886242ffa741a809924a9f41",  "amount": 1999, "currency": "SAR",'
    ' "transactionStatus": 2, "subject": "قهوة ☕"}'
).encode()
MESSAGE_ID = "cf6c814f886242ffa741a809924a9f41:2"


@dataclass
class Program:
    """A receiving program running, and what it has printed (stdout and stderr, line by line)."""

    process: asyncio.subprocess.Process
    url: str = ""
    lines: list[str] = field(default_factory=list)
    new_line: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def printed(self, line: str, since: int, timeout_s: float = 5) -> None:
        """Returns once `line` was printed, from line `since` on (the program is shared)."""
        try:
            async with asyncio.timeout(timeout_s), self.new_line:
                await self.new_line.wait_for(lambda: line in self.lines[since:])
        except TimeoutError:
            raise AssertionError(f"{line!r} never printed:\n" + "\n".join(self.lines)) from None

    async def drain(self, listening: asyncio.Future[str]) -> None:
        assert self.process.stdout is not None
        while raw := await self.process.stdout.readline():
            text = raw.decode(errors="replace").rstrip("\n")
            async with self.new_line:
                self.lines.append(text)
                self.new_line.notify_all()
            if (match := _LISTENING.fullmatch(text)) and not listening.done():
                listening.set_result(f"http://{match.group(1)}")
        if not listening.done():
            listening.set_exception(AssertionError("exited at start:\n" + "\n".join(self.lines)))


@asynccontextmanager
async def running(command: list[str], secret: str) -> AsyncIterator[Program]:
    """The program on a free port of 127.0.0.1, stopped on leaving."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # UTF-8 output whatever the machine's locale: the tests read the bodies printed.
        env={**os.environ, "PORT": "0", "NEU_SIGNING_SECRET": secret, "LC_ALL": "C.UTF-8"},
    )
    program = Program(process)
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    drain = asyncio.create_task(program.drain(listening))
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            program.url = await listening
        yield program
    finally:
        if process.returncode is None:
            process.terminate()
        async with asyncio.timeout(10):
            await process.wait()
            await drain


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=list(PROGRAMS))
async def program(request: pytest.FixtureRequest) -> AsyncIterator[Program]:
    command = PROGRAMS[request.param]
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    async with running(command, SECRET) as started:
        yield started


@dataclass
class Sent:
    body: bytes
    headers: dict[str, str]
    status: int


# What the worker sends that the program reads (Host and Content-Length are the relay's own).
PASSED_ON = {
    "content-type",
    "idempotency-key",
    "x-neu-verified",
    ID_HEADER,
    TIMESTAMP_HEADER,
    SIGNATURE_HEADER,
}


@asynccontextmanager
async def relay(to: str) -> AsyncIterator[tuple[str, list[Sent]]]:
    """A server on loopback that passes each request on to `to` and records it as it came,
    with the answer's status: what the worker sent, as the program got it."""
    sent: list[Sent] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {
            name: value for name, value in request.headers.items() if name.lower() in PASSED_ON
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(to, data=body, headers=headers) as answer,
        ):
            sent.append(Sent(body, dict(request.headers), answer.status))
            return web.Response(status=answer.status, body=await answer.read())

    app = web.Application()
    app.router.add_post("/payments", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/payments", sent
    finally:
        await runner.cleanup()


def delivered(outbox: SqliteOutbox) -> Callable[[], Awaitable[bool]]:
    """Whether the worker has recorded a delivery as delivered (after the program's 2xx)."""

    async def check() -> bool:
        return bool(await outbox.listing((DELIVERED,)))

    return check


async def post(program: Program, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(program.url + "/payments", data=body, headers=headers) as answer,
    ):
        return answer.status, await answer.text()


@pytest.mark.e2e
@on_module_loop
async def test_a_delivery_the_worker_signs_is_verified_and_answered_2xx(
    program: Program, tmp_path: Path
) -> None:
    since = len(program.lines)
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    clock = SystemClock()
    trade_no, status = MESSAGE_ID.split(":")
    assert await outbox.add("demo", trade_no, int(status), PAYLOAD, clock.now_ms() / 1000)
    async with relay(program.url) as (url, sent):
        worker = DeliveryWorker(
            outbox, {"demo": Destination(url, (KEY,))}, DeliveryPolicy(timeout_s=5), clock
        )
        worker.start()
        try:
            await until_answers(delivered(outbox), timeout_s=10)
        finally:
            await worker.stop()
            await outbox.close()
    [delivery] = sent
    assert delivery.status == 204
    assert delivery.body == PAYLOAD
    assert delivery.headers["webhook-id"] == delivery.headers["Idempotency-Key"] == MESSAGE_ID
    # The convention's own verifier accepts what the program accepted.
    assert Webhook(SECRET).verify(delivery.body, delivery.headers)["amount"] == 1999
    await program.printed(f"verified {MESSAGE_ID} {PAYLOAD.decode()}", since)


Change = Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]


def signed_by(key_text: str, offset_s: int = 0) -> Change:
    def change(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        return signed_headers([signing_key(key_text)], MESSAGE_ID, now() + offset_s, body), body

    return change


def without(name: str) -> Change:
    def change(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        return {key: value for key, value in headers.items() if key != name}, body

    return change


def now() -> int:
    return int(time.time())


MISSING = "missing webhook-id, webhook-timestamp or webhook-signature"
NO_MATCH = "no signature matches"
OUT_OF_TOLERANCE = "webhook-timestamp is more than 5 minutes from now"


@pytest.mark.e2e
@on_module_loop
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(signed_by(OTHER), NO_MATCH, id="signed with another secret"),
        pytest.param(
            lambda headers, body: (headers, body.replace(b"1999", b"1")),
            NO_MATCH,
            id="a changed body",
        ),
        pytest.param(
            lambda headers, body: (headers, body.replace(b", ", b",")),
            NO_MATCH,
            id="the same JSON spaced otherwise",
        ),
        pytest.param(
            lambda headers, body: ({**headers, "webhook-id": "T2:2"}, body),
            NO_MATCH,
            id="another webhook-id",
        ),
        pytest.param(signed_by(SECRET, -360), OUT_OF_TOLERANCE, id="signed 6 minutes ago"),
        pytest.param(signed_by(SECRET, 360), OUT_OF_TOLERANCE, id="signed 6 minutes ahead"),
        pytest.param(
            lambda headers, body: ({**headers, "webhook-timestamp": f"{now() * 1000}"}, body),
            "webhook-timestamp is not unix seconds",
            id="a timestamp in milliseconds",
        ),
        pytest.param(
            lambda headers, body: (
                {**headers, "webhook-signature": headers["webhook-signature"][3:]},
                body,
            ),
            NO_MATCH,
            id="a signature without its v1,",
        ),
        pytest.param(without("webhook-id"), MISSING, id="no webhook-id"),
        pytest.param(without("webhook-timestamp"), MISSING, id="no webhook-timestamp"),
        pytest.param(without("webhook-signature"), MISSING, id="no webhook-signature"),
    ],
)
async def test_a_delivery_not_signed_now_with_its_secret_is_refused(
    program: Program, change: Change, reason: str
) -> None:
    since = len(program.lines)
    headers, body = change(signed_headers([KEY], MESSAGE_ID, now(), PAYLOAD), PAYLOAD)
    assert await post(program, body, headers) == (400, reason + "\n")
    await program.printed(f"refused {reason}", since)


@pytest.mark.e2e
@on_module_loop
@pytest.mark.parametrize(
    "keys",
    [
        pytest.param((KEY, OTHER_KEY), id="the receiver knows the new secret"),
        pytest.param((OTHER_KEY, KEY), id="the receiver knows the old secret"),
    ],
)
async def test_during_a_rotation_a_receiver_that_knows_either_secret_accepts(
    program: Program, keys: tuple[SigningKey, ...]
) -> None:
    since = len(program.lines)
    headers = signed_headers(keys, MESSAGE_ID, now(), PAYLOAD)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert await post(program, PAYLOAD, headers) == (204, "")
    await program.printed(f"verified {MESSAGE_ID} {PAYLOAD.decode()}", since)


def test_the_page_shows_each_program_whole() -> None:
    shown = re.findall(r'--8<-- "docs/receivers/([^"]+)"', page("receiving.md"))
    assert sorted(shown) == sorted(path.name for path in RECEIVERS.iterdir() if path.is_file())


def test_the_pages_example_is_signed_with_the_demo_secret() -> None:
    match = re.search(r"```\n(POST /payments .*?)\n\n(.*?)\n```", page("receiving.md"), re.DOTALL)
    assert match is not None
    head, body = match.group(1).splitlines(), match.group(2).encode()
    headers = dict(line.split(": ", 1) for line in head[1:])
    verdict = verify([signing_key(DEMO_SIGNING_SECRET)], headers, body, now(), tolerance_s=None)
    assert verdict.accepted, verdict.problem
    assert headers["webhook-id"] == headers["Idempotency-Key"]
