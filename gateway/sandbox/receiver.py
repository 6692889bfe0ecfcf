"""The sandbox standing in for an app's own service: it receives the gateway's deliveries at
POST /sandbox/deliveries and verifies each as a service should (Standard Webhooks: the
signature over the exact body, by a secret it knows, and a timestamp within five minutes),
answering 200 or 400 with the reason; GET /sandbox/deliveries shows what came and the verdict.

It knows the public demo signing secret, and those of the apps whose upstream is this sandbox
(the gateway that embeds it tells it, and again after a rotation). Its clock is the host's:
the service is not the platform, whose clock sandbox.clock_offset_s may move.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from gateway.core.clock import Clock
from gateway.core.secrets import DEMO_SIGNING_SECRET
from gateway.core.verification import Rejected
from gateway.core.webhooks import (
    ID_HEADER,
    SIGNED_HEADERS,
    SigningKey,
    SigningSecretError,
    Verdict,
    signing_key,
    verify,
)
from gateway.sandbox.controls import ok

# Enough to follow a walk-through or a test; the oldest go first.
KEPT_DELIVERIES = 100
# A delivery is a trade's detail, a few hundred bytes: far more is no delivery, and is
# refused before it is read whole.
MAX_DELIVERY_BYTES = 1 << 20
# A body shown in the list is cut here, and only one this short is shown parsed: a large one
# parsed whole would be many times its size in memory, for each of the deliveries kept.
SHOWN_BODY_CHARS = 4096


class Receiver:
    """The deliveries received, newest last, and the keys they are verified with."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._keys: tuple[SigningKey, ...] = (signing_key(DEMO_SIGNING_SECRET),)
        self.received: deque[dict[str, Any]] = deque(maxlen=KEPT_DELIVERIES)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """The demo secret and these, in place of the ones known before."""
        keys = [signing_key(DEMO_SIGNING_SECRET)]
        for secret in secrets:
            try:
                keys.append(signing_key(secret))
            except SigningSecretError:
                continue  # the gateway's loader refuses such a secret; nothing to verify with
        self._keys = tuple(keys)

    def receive(
        self, headers: Mapping[str, str], body: bytes, repeated: str = ""
    ) -> dict[str, Any]:
        """Verifies and keeps a delivery; `repeated`: a header it had more than once."""
        if repeated:
            verdict = Verdict(None, f"more than one {repeated} header")
        else:
            verdict = verify(self._keys, headers, body, self._clock.now_ms() / 1000)
        message_id = headers.get(ID_HEADER, "")
        record = {
            "webhookId": message_id,
            "idempotencyKey": headers.get("idempotency-key", ""),
            "webhookTimestamp": verdict.timestamp,
            "verified": verdict.accepted,
            "reason": verdict.problem,
            # A service acts once per webhook-id; a repeat is answered 200 all the same.
            "repeat": verdict.accepted
            and any(seen["verified"] and seen["webhookId"] == message_id for seen in self.received),
            "body": _shown(body),
        }
        self.received.append(record)
        return record


RECEIVER = web.AppKey("sandbox_receiver", Receiver)


def set_signing_secrets(sandbox: web.Application, secrets: Iterable[str]) -> None:
    """What the process embedding a sandbox tells it: the signing secrets of its apps."""
    sandbox[RECEIVER].set_secrets(secrets)


def _shown(body: bytes) -> Any:
    if len(body) <= SHOWN_BODY_CHARS:
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            pass  # shown as text: anyone may post here, nested as deep as they like
    return body[:SHOWN_BODY_CHARS].decode("utf-8", "replace")


async def receive(request: web.Request) -> web.Response:
    """POST /sandbox/deliveries: a delivery, verified; 400 with the reason if it fails."""
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > MAX_DELIVERY_BYTES:
            raise Rejected(413, f"a delivery is at most {MAX_DELIVERY_BYTES} bytes")
    headers = {name.lower(): value for name, value in request.headers.items()}
    # Which one of two a service reads depends on its framework (the first, the last, or both
    # joined by a comma): a delivery that repeats one is ambiguous, whichever would verify.
    repeated = next(
        (name for name in SIGNED_HEADERS if len(request.headers.getall(name, ())) > 1), ""
    )
    record = request.app[RECEIVER].receive(headers, bytes(body), repeated)
    if not record["verified"]:
        raise Rejected(400, f"delivery refused: {record['reason']}")
    return ok({"verified": True, "webhookId": record["webhookId"], "repeat": record["repeat"]})


async def deliveries(request: web.Request) -> web.Response:
    """GET /sandbox/deliveries: what was received, oldest first, with each verdict."""
    return ok(list(request.app[RECEIVER].received))


def add_receiver_routes(app: web.Application, clock: Clock) -> None:
    app[RECEIVER] = Receiver(clock)
    app.router.add_post("/sandbox/deliveries", receive)
    app.router.add_get("/sandbox/deliveries", deliveries)
