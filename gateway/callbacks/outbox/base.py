"""What every outbox is: the Outbox protocol, a Delivery and its states, and OutboxError,
the one exception its callers see whatever the store underneath raised."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from gateway.http.admin import Unusable

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
P = ParamSpec("P")
R = TypeVar("R")


class OutboxError(Exception):
    """The outbox's store (SQLite, Redis) failed; callers never see that store's own errors."""


class OutboxNotWritable(OutboxError, Unusable):
    """The outbox cannot take a write now; the message says why."""


ErrorClasses = tuple[type[Exception], ...]
Method = Callable[P, Coroutine[Any, Any, R]]


def translating(
    store_errors: Callable[[], ErrorClasses],
) -> Callable[[Method[P, R]], Method[P, R]]:
    """A decorator that turns `store_errors()` raised by a store's method into OutboxError;
    asked for when one is raised, so a store can name errors of a module it imports late."""

    def decorate(method: Method[P, R]) -> Method[P, R]:
        @functools.wraps(method)
        async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except Exception as exc:
                if not isinstance(exc, store_errors()):
                    raise
                raise OutboxError(f"{type(exc).__name__}: {exc}") from exc

        return translated

    return decorate


@dataclass(frozen=True)
class Delivery:
    id: int
    app: str
    trade_no: str
    status: int
    payload: bytes
    state: str
    attempts: int
    next_at: float
    last_error: str
    created_at: float

    @property
    def idempotency_key(self) -> str:
        return f"{self.trade_no}:{self.status}"


class Outbox(Protocol):
    # How much longer than a delivery attempt its lease lasts: a moment, and on a store that
    # can fail over, the failover's worst time (while a 2xx is being recorded, no other worker
    # may take the delivery).
    lease_margin_s: float

    async def add(
        self, app: str, trade_no: str, status: int, payload: bytes, now: float
    ) -> bool: ...
    async def holds(self, trade_no: str, status: int) -> bool: ...
    async def due(self, now: float, limit: int, lease_s: float) -> list[Delivery]: ...
    async def next_due_at(self) -> float | None: ...
    async def delivered(self, delivery_id: int) -> None: ...
    async def failed(self, delivery_id: int, error: str, next_at: float, dead: bool) -> None: ...
    async def listing(self, states: tuple[str, ...]) -> list[Delivery]: ...
    async def replay(self, delivery_id: int, now: float) -> bool: ...
    async def counts(self) -> dict[str, int]:
        """How many deliveries are pending and dead."""
        ...

    async def check_writable(self) -> None:
        """Raises OutboxError (OutboxNotWritable, saying why) unless a write would be kept."""
        ...

    def changes(self) -> AsyncIterator[None]:
        """Yields whenever another process (`neu-gateway callbacks replay`) changed the
        outbox, so a worker can look at once instead of at its next check."""
        ...

    async def sign_seen(self, sign: str, now: float) -> bool: ...
    async def remember_sign(self, sign: str, now: float, ttl_s: float) -> None: ...
    async def close(self) -> None: ...
