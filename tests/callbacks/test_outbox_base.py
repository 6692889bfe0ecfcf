"""What every outbox shares: its errors, and a delivery's idempotency key."""

from __future__ import annotations

import pytest

from gateway.callbacks.outbox.base import (
    PENDING,
    Delivery,
    OutboxError,
    OutboxNotWritable,
    translating,
)
from gateway.http.admin import Unusable


class StoreError(Exception):
    """Stands for a store library's own exception."""


asked: list[int] = []


def store_errors() -> tuple[type[Exception], ...]:
    asked.append(1)
    return (StoreError,)


class Store:
    @translating(store_errors)
    async def fail_with(self, error: Exception) -> None:
        raise error

    @translating(store_errors)
    async def answer(self) -> str:
        return "answer"


async def test_a_stores_error_becomes_an_outbox_error_naming_its_kind() -> None:
    cause = StoreError("disk I/O error")
    with pytest.raises(OutboxError, match=r"^StoreError: disk I/O error$") as caught:
        await Store().fail_with(cause)
    assert caught.value.__cause__ is cause


async def test_other_errors_pass_as_they_are_and_the_stores_are_named_only_when_needed() -> None:
    asked.clear()
    assert await Store().answer() == "answer"
    assert asked == [], "a store may import its library late"
    with pytest.raises(KeyError):
        await Store().fail_with(KeyError("a bug"))
    assert asked == [1]


def test_not_writable_is_an_outbox_error_that_readiness_shows() -> None:
    refusal = OutboxNotWritable("the filesystem holding the outbox is read-only")
    assert isinstance(refusal, OutboxError)
    assert isinstance(refusal, Unusable)


def test_a_deliverys_idempotency_key_is_its_trade_and_status() -> None:
    delivery = Delivery(7, "demo", "T1", 2, b"{}", PENDING, 0, 0.0, "", 0.0)
    assert delivery.idempotency_key == "T1:2"
