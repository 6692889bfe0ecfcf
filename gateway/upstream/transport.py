"""The one interface under the platform client: `Transport.send(Request) -> Answer`.

Two transports implement it, each owning how its own failures become the gateway's errors
(gateway.core.errors), so nothing above a transport ever sees a library's exception:

- gateway.upstream.lean.transport: the lean HTTP/1.1 client, for direct calls with a body in
  memory (nearly every call);
- gateway.upstream.aiohttp_transport: aiohttp's client, for calls through a forward proxy and
  for multipart uploads.

`Upstream` (gateway.upstream.client) picks one per request and wraps it in its policy:
retries, the breaker, the platform's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from aiohttp import MultipartWriter
from multidict import CIMultiDict
from yarl import URL

from gateway.config.model import App
from gateway.core.platform import envelope_status

# A request's body: none (a GET), a form in memory, or a multipart upload (aiohttp's only).
Body = bytes | MultipartWriter | None


@dataclass(frozen=True, slots=True)
class Request:
    """One attempt at a call, signed and ready to go: made once per attempt, passed down."""

    # Whose call it is: its TLS files, proxy and server name pick the connection.
    app: App
    method: str
    url: URL
    headers: CIMultiDict[str]
    body: Body
    # What is left of the call's time (timeouts.total_s) for this attempt.
    timeout_s: float
    # limits.max_response_bytes: the most of the answer's body (decoded) read.
    max_response_bytes: int


# Made per call: not frozen, whose __init__ costs four times as much.
@dataclass
class Answer:
    """The platform's answer, read in full: its body decoded (no Content-Encoding left)."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    # Attempts it took, when more than one (X-Neu-Attempts).
    attempts: int = 1

    @cached_property
    def platform_status(self) -> int | None:
        """`responseHeader.status`, read once for both the metrics and the retry decision."""
        return envelope_status(self.body)


class Transport(Protocol):
    """Sends one request and reads its whole answer, or raises a GatewayError: UpstreamTimeout
    (504) when the time runs out; UpstreamUnreachable (502) or one of its kinds (TLS, DNS, a
    bad response) otherwise, with unsent=True when no byte of the request left."""

    async def send(self, request: Request) -> Answer: ...
