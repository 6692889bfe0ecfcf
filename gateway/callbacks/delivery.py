"""Delivers verified payment callbacks from the outbox to the apps' internal services.

Each delivery is POSTed as JSON (the trade detail the platform confirmed) with
`Idempotency-Key: <tradeNo>:<transactionStatus>` and `X-Neu-Verified: tradedetail`, until a
2xx; otherwise again after an exponential backoff with jitter, and parked as dead after
`callbacks.max_attempts`. With the app's signing secrets, each attempt is signed anew
(Standard Webhooks: `webhook-id` the idempotency key, `webhook-timestamp` the attempt's time,
`webhook-signature` over the bytes sent), so the service can tell it came from the gateway.

Once: a delivery is sent only on a lease the outbox holds (and, on Redis, its replicas), and a
2xx is recorded before anything else is sent. Should the outbox fail just then (a Redis
failover), the worker keeps the delivery as sent and records it again until that works,
sending it no more, and its lease outlasts a failover so no other worker takes it meanwhile:
the service gets it once, unless this process dies in those seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from gateway import logs
from gateway.callbacks.outbox import Delivery, Outbox, OutboxError
from gateway.config.model import App
from gateway.core.clock import Clock, within
from gateway.core.headers import NOT_IN_A_HEADER_VALUE
from gateway.core.platform import backoff_s
from gateway.core.redaction import escape_controls
from gateway.core.webhooks import SigningKey, signed_headers, signing_key

log = logs.logger("neu_gateway.delivery")
BATCH = 20
IDLE_CHECK_S = 5.0
# How soon a 2xx the outbox could not record is recorded again.
RECORD_AGAIN_S = 0.5
CANCEL_AGAIN_AFTER_S = 0.05
UNSENDABLE = "its tradeNo cannot be sent in a header as it is"


# Of a refusal's body, what is read for its reason: a service's error is a line or an
# envelope; a service that answers megabytes is not waited for.
REASON_READ_BYTES = 4096
REASON_SHOWN_CHARS = 160


async def _start_of(stream: aiohttp.StreamReader) -> bytes:
    start = b""
    while len(start) < REASON_READ_BYTES and (chunk := await stream.read(REASON_READ_BYTES)):
        start += chunk
    return start[:REASON_READ_BYTES]


def refusal_reason(body: bytes) -> str:
    """`: <why>` from a refusal's body (its envelope's msg, or its first line), to go after
    the status in the log and in `callbacks list`; "" if it says nothing. A service that
    checks signatures says there which check failed."""
    text = body.decode("utf-8", "replace")
    try:
        answer = json.loads(text)
    except (ValueError, RecursionError):
        answer = None
    if isinstance(answer, dict):
        header = answer.get("responseHeader")
        said = header.get("msg") if isinstance(header, dict) else None
        said = said or next(
            (answer[key] for key in ("error", "message", "reason") if key in answer), None
        )
        text = said if isinstance(said, str) else ""
    line = " ".join(text.strip().splitlines()[:1]).strip()
    if not line:
        return ""
    return f": {escape_controls(line[:REASON_SHOWN_CHARS])}"


@dataclass(frozen=True)
class Destination:
    """Where an app's deliveries go (None: nowhere yet), and the keys each is signed with."""

    url: str | None
    signing_keys: tuple[SigningKey, ...] = ()

    @classmethod
    def of(cls, app: App) -> Destination:
        keys = tuple(signing_key(secret.reveal()) for secret in app.signing_secrets)
        return cls(app.callbacks.deliver_to, keys)


def jittered_backoff_s(attempts: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential in the attempts made, capped, with ±50% jitter so retries do not align."""
    return backoff_s(attempts, base_s, max_s, rng.uniform(0.5, 1.5))


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard a delivery is tried: attempts in all, the backoff, one attempt's time."""

    max_attempts: int = 12
    backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    timeout_s: float = 10.0


class DeliveryWorker:
    def __init__(
        self,
        outbox: Outbox,
        targets: Mapping[str, Destination],
        settings: DeliveryPolicy,
        clock: Clock,
        count: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        """`targets` may change while the worker runs (a reload); `count(outcome)` is told
        of each attempt: delivered, failed or dead."""
        self._count = count
        self._outbox = outbox
        self._targets = targets
        self._settings = settings
        self._clock = clock
        self._wake = asyncio.Event()
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None
        # Deliveries the service answered 2xx that the outbox has not recorded yet.
        self._unrecorded: set[int] = set()

    def start(self) -> None:
        session = self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s)
        )
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(session))
        self._watch = loop.create_task(self._watch_changes())

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Returns promptly in every state: a client library may absorb the cancellation
        (redis-py does, mid-call), so the loop also sees `_stopping` and the wake-up."""
        self._stopping = True
        self._wake.set()
        pending = {task for task in (self._task, self._watch) if task is not None}
        while pending:
            # Cancelled again until they end: a cancellation that redis-py swallowed (it does,
            # while connecting) would otherwise leave a task waiting for ever.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN_AFTER_S)
        if self._session is not None:
            await self._session.close()

    async def _watch_changes(self) -> None:
        """Wakes the loop when another process replays a delivery."""
        while not self._stopping:
            try:
                async for _ in self._outbox.changes():
                    self.wake()
            except Exception:
                log.warning("lost the outbox's change signal; listening again shortly")
            if not self._stopping:
                await self._clock.sleep(IDLE_CHECK_S)

    async def _run(self, session: aiohttp.ClientSession) -> None:
        while not self._stopping:
            try:
                await self._record_sent()
                await self._deliver_due(session)
                next_at = await self._outbox.next_due_at()
            except OutboxError as exc:
                # A Redis failover, say: expected to pass, so no traceback each turn.
                log.warning("the outbox is unavailable (%s); delivering when it is back", exc)
                next_at = None
            except Exception:
                log.exception("delivery worker failed; trying again shortly")
                next_at = None
            wait_s = RECORD_AGAIN_S if self._unrecorded else IDLE_CHECK_S
            if next_at is not None:
                wait_s = min(max(0.0, next_at - self._clock.now_ms() / 1000), wait_s)
            self._wake.clear()
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await within(self._clock, wait_s, self._wake.wait())

    async def _deliver_due(self, session: aiohttp.ClientSession) -> None:
        # Longer than one attempt can take, and than a failover of the outbox's store (while
        # a 2xx is being recorded, no other worker may take the delivery); after a crash,
        # what it had leased waits this long before it is sent again.
        lease_s = 2 * self._settings.timeout_s + self._outbox.lease_margin_s
        batch = await self._outbox.due(self._clock.now_ms() / 1000, BATCH, lease_s)
        # Sent already: only its record is missing (_record_sent sees to it).
        batch = [delivery for delivery in batch if delivery.id not in self._unrecorded]
        # Side by side, so the whole batch finishes within one attempt's time and its lease.
        await asyncio.gather(*(self._deliver(session, delivery) for delivery in batch))

    async def _record_sent(self) -> None:
        for delivery_id in sorted(self._unrecorded):
            try:
                await self._outbox.delivered(delivery_id)
            except OutboxError:
                # Still failing: said when it first failed; the others are delivered meanwhile.
                return
            self._unrecorded.discard(delivery_id)
            log.info("recorded delivery %d as delivered", delivery_id)

    async def _sent(self, delivery: Delivery) -> None:
        self._count("delivered")
        log.info("delivered %s to app %s", delivery.idempotency_key, delivery.app)
        self._unrecorded.add(delivery.id)
        try:
            await self._outbox.delivered(delivery.id)
        except OutboxError as exc:
            log.warning(
                "delivered %s, but the outbox could not record it (%s); recording it again "
                "shortly, and not sending it again",
                delivery.idempotency_key,
                exc,
            )
            return
        self._unrecorded.discard(delivery.id)

    async def _deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        target = self._targets.get(delivery.app)
        error = ""
        # Never sendable, so never tried again: what a header cannot hold, or loses on the way
        # (white space at its start, which receivers strip), where the key is the webhook-id,
        # signed as it is, so it must arrive as it is.
        key = delivery.idempotency_key
        unsendable = NOT_IN_A_HEADER_VALUE.search(key) is not None or key[:1] in (" ", "\t")
        if unsendable:
            error = UNSENDABLE
        elif target is None or target.url is None:
            error = "no callbacks.deliver_to for this app"
        else:
            signed = signed_headers(
                target.signing_keys,
                delivery.idempotency_key,
                self._clock.now_ms() // 1000,
                delivery.payload,
            )
            try:
                async with session.post(
                    target.url,
                    # bytes, sent as they are: the signature is over exactly these.
                    data=delivery.payload,
                    headers={
                        "Content-Type": "application/json",
                        "Idempotency-Key": delivery.idempotency_key,
                        "X-Neu-Verified": "tradedetail",
                        **signed,
                    },
                    allow_redirects=False,
                ) as response:
                    if 200 <= response.status < 300:
                        await self._sent(delivery)
                        return
                    error = f"HTTP {response.status}" + refusal_reason(
                        await _start_of(response.content)
                    )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = type(exc).__name__
        attempts = delivery.attempts + 1
        dead = unsendable or attempts >= self._settings.max_attempts
        delay = jittered_backoff_s(
            attempts, self._settings.backoff_s, self._settings.max_backoff_s, self._rng
        )
        await self._outbox.failed(delivery.id, error, self._clock.now_ms() / 1000 + delay, dead)
        self._count("dead" if dead else "failed")
        if dead:
            log.warning(
                "callback %s for app %s is dead after %d attempts (%s); "
                "neu-gateway callbacks replay %d sends it again",
                delivery.idempotency_key,
                delivery.app,
                attempts,
                error,
                delivery.id,
            )
        else:
            log.info(
                "delivery of %s failed (%s); retry in %.1f s",
                delivery.idempotency_key,
                error,
                delay,
            )
