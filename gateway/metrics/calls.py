"""What the platform answered while one request was handled, for the request's access line."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from gateway.metrics.labels import NONE


@dataclass
class UpstreamCall:
    """What the platform answered while one request was handled, for its access log line."""

    http_status: str = NONE
    platform_status: str = NONE
    seconds: float = 0.0


# Set by the access middleware for each request; the upstream client fills it in.
CURRENT_CALL: ContextVar[UpstreamCall | None] = ContextVar("neu_upstream_call", default=None)
