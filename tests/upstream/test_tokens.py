"""The token cache's rules and its single flight, with the in-memory store."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core import jwt
from gateway.core.errors import CacheUnavailable
from gateway.upstream.stores import MemoryStore
from gateway.upstream.tokens import (
    CachedAnswer,
    StoreError,
    TokenCache,
    issued_token,
    says_token_invalid,
)
from tests.support.clock import MutableClock

NOW_S = 1_700_000_000


def token(open_id: str = "o1", exp: float = NOW_S + 3600) -> str:
    return jwt.encode({"openId": open_id, "exp": exp, "iat": NOW_S}, b"platform-key")


def exchange_answer(access_token: str, expire: int = 3600, status: int = 200) -> CachedAnswer:
    body = {
        "responseHeader": {"status": status, "msg": "OK" if status == 200 else "invalid code"},
        "response": {"accessToken": access_token, "expire": expire, "tokenType": "bearer"}
        if status == 200
        else None,
    }
    return CachedAnswer(200, "application/json", json.dumps(body).encode())


@pytest.mark.parametrize(
    ("expire", "exp", "margin", "life"),
    [
        pytest.param(3600, NOW_S + 600, 60, 540, id="JWT exp is sooner"),
        pytest.param(300, NOW_S + 3600, 60, 240, id="expire is sooner"),
        pytest.param(30, NOW_S + 3600, 60, 0, id="margin never makes it negative"),
        pytest.param(3600, NOW_S - 5, 0, 0, id="already expired"),
    ],
)
def test_token_life(expire: int, exp: float, margin: float, life: float) -> None:
    issued = issued_token(exchange_answer(token(exp=exp), expire), NOW_S, margin)
    assert issued is not None
    assert (issued.open_id, issued.life_s) == ("o1", life)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(exchange_answer("", status=400), id="platform refused"),
        pytest.param(CachedAnswer(502, "application/json", b"{}"), id="HTTP error"),
        pytest.param(CachedAnswer(200, "text/html", b"<html>"), id="not JSON"),
        pytest.param(exchange_answer("not-a-jwt"), id="token without openId"),
    ],
)
def test_no_token_from_a_failed_or_odd_answer(answer: CachedAnswer) -> None:
    assert issued_token(answer, NOW_S, 0) is None


def test_says_token_invalid() -> None:
    refused = {"responseHeader": {"status": 401, "msg": "invalid accessToken"}, "response": None}
    assert says_token_invalid(CachedAnswer(200, "application/json", json.dumps(refused).encode()))
    assert says_token_invalid(CachedAnswer(401, "text/plain", b"no"))
    assert not says_token_invalid(exchange_answer(token()))


def test_a_refused_sign_says_nothing_of_the_token() -> None:
    refused = {"responseHeader": {"status": 401, "msg": "sign error"}, "response": None}
    assert not says_token_invalid(
        CachedAnswer(200, "application/json", json.dumps(refused).encode())
    )


@given(st.integers(100, 599), st.text(max_size=40), st.binary(max_size=200))
def test_answer_round_trips(status: int, content_type: str, body: bytes) -> None:
    answer = CachedAnswer(status, content_type, body)
    assert CachedAnswer.loads(answer.dumps()) == answer


@pytest.fixture
def clock() -> MutableClock:
    clock = MutableClock()
    clock.now = NOW_S * 1000
    return clock


def memory_cache(clock: MutableClock, max_tokens: int = 100) -> TokenCache:
    return TokenCache(MemoryStore(max_tokens, clock), clock, margin_s=0, wait_s=5)


class Platform:
    """Counts exchanges; each may be held until released, to make callers overlap."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()

    def fetcher(self, answer: CachedAnswer):  # type: ignore[no-untyped-def]
        async def fetch() -> CachedAnswer:
            self.calls += 1
            await self.release.wait()
            return answer

        return fetch


async def test_repeated_exchange_is_served_from_the_cache(clock: MutableClock) -> None:
    cache, platform = memory_cache(clock), Platform()
    answer = exchange_answer(token())
    assert await cache.exchange("demo", "c1", "user.info", platform.fetcher(answer)) == (
        answer,
        "miss",
    )
    assert await cache.exchange("demo", "c1", "user.info", platform.fetcher(answer)) == (
        answer,
        "hit",
    )
    assert platform.calls == 1
    assert await cache.token_for("demo", "o1") == token()


async def test_scope_order_does_not_matter(clock: MutableClock) -> None:
    cache, platform = memory_cache(clock), Platform()
    answer = exchange_answer(token())
    await cache.exchange("demo", "c1", "user.info,user.phone", platform.fetcher(answer))
    await cache.exchange("demo", "c1", "user.phone, user.info", platform.fetcher(answer))
    assert platform.calls == 1


async def test_concurrent_exchanges_share_one_call(clock: MutableClock) -> None:
    cache, platform = memory_cache(clock), Platform()
    platform.release.clear()
    answer = exchange_answer(token())
    calls = [
        asyncio.ensure_future(cache.exchange("demo", "c1", "user.info", platform.fetcher(answer)))
        for _ in range(20)
    ]
    await asyncio.sleep(0)  # wait-ok: lets all 20 callers reach the cache before the answer
    platform.release.set()
    results = await asyncio.gather(*calls)
    assert platform.calls == 1
    assert {result[0] for result in results} == {answer}


async def test_a_failed_exchange_is_not_cached(clock: MutableClock) -> None:
    cache, platform = memory_cache(clock), Platform()
    refused = exchange_answer("", status=400)
    assert await cache.exchange("demo", "c1", "user.info", platform.fetcher(refused)) == (
        refused,
        "miss",
    )
    await cache.exchange("demo", "c1", "user.info", platform.fetcher(refused))
    assert platform.calls == 2


async def test_an_error_reaches_every_waiter_and_is_not_cached(clock: MutableClock) -> None:
    cache = memory_cache(clock)
    gate = asyncio.Event()

    async def failing() -> CachedAnswer:
        await gate.wait()
        raise CacheUnavailable("boom")

    calls = [asyncio.ensure_future(cache.exchange("demo", "c", "s", failing)) for _ in range(3)]
    await asyncio.sleep(0)  # wait-ok: lets all 3 callers join the flight
    gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(result, CacheUnavailable) for result in results)
    platform = Platform()
    await cache.exchange("demo", "c", "s", platform.fetcher(exchange_answer(token())))
    assert platform.calls == 1


async def test_expired_tokens_are_never_served(clock: MutableClock) -> None:
    cache, platform = memory_cache(clock), Platform()
    answer = exchange_answer(token(), expire=2)
    await cache.exchange("demo", "c1", "user.info", platform.fetcher(answer))
    clock.advance(1.9)
    assert await cache.token_for("demo", "o1") == token()
    clock.advance(0.1)
    assert await cache.token_for("demo", "o1") is None
    await cache.exchange("demo", "c1", "user.info", platform.fetcher(answer))
    assert platform.calls == 2


async def test_eviction_forgets_the_token_everywhere(clock: MutableClock) -> None:
    cache, platform = memory_cache(clock), Platform()
    answer = exchange_answer(token())
    await cache.exchange("demo", "c1", "user.info", platform.fetcher(answer))
    await cache.evict("demo", token())
    assert await cache.token_for("demo", "o1") is None
    await cache.exchange("demo", "c1", "user.info", platform.fetcher(answer))
    assert platform.calls == 2


async def test_the_memory_store_is_a_bounded_lru(clock: MutableClock) -> None:
    cache, platform = memory_cache(clock, max_tokens=2), Platform()
    for user in ("a", "b", "c"):
        await cache.exchange(
            "demo", f"code-{user}", "s", platform.fetcher(exchange_answer(token(user)))
        )
    assert await cache.token_for("demo", "a") is None
    assert await cache.token_for("demo", "c") == token("c")
    assert len(cache.store) <= 2 * 3  # type: ignore[arg-type]


class BrokenStore(MemoryStore):
    shared = True
    broken = True

    async def get(self, key: str) -> bytes | None:
        if self.broken:
            raise StoreError("ConnectionError")
        return await super().get(key)

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        if self.broken:
            raise StoreError("ConnectionError")
        await super().put(key, value, ttl_s)

    async def lock(self, key: str, ttl_s: float) -> bool:
        if self.broken:
            raise StoreError("ConnectionError")
        return True


async def test_a_store_outage_degrades_and_recovers(
    clock: MutableClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "neu_gateway.tokens")
    store = BrokenStore(10, clock)
    cache, platform = TokenCache(store, clock, margin_s=0, wait_s=5), Platform()
    answer = exchange_answer(token())
    assert (await cache.exchange("demo", "c1", "s", platform.fetcher(answer)))[0] == answer
    assert (await cache.exchange("demo", "c2", "s", platform.fetcher(answer)))[0] == answer
    assert platform.calls == 2
    with pytest.raises(CacheUnavailable):
        await cache.token_for("demo", "o1")
    assert caplog.text.count("token cache store unavailable") == 1
    store.broken = False
    with pytest.raises(CacheUnavailable):
        await cache.token_for("demo", "o1")  # still inside the retry window
    clock.advance(1)
    assert await cache.token_for("demo", "o1") is None
    assert "token cache store is back" in caplog.text
    await cache.exchange("demo", "c3", "s", platform.fetcher(answer))
    assert await cache.token_for("demo", "o1") == token()


class SharedStore(MemoryStore):
    """One store for two caches, with a real lock: what Redis is to two replicas."""

    shared = True

    def __init__(self, clock: MutableClock) -> None:
        super().__init__(100, clock)
        self.locks: set[str] = set()

    async def lock(self, key: str, ttl_s: float) -> bool:
        if key in self.locks:
            return False
        self.locks.add(key)
        return True

    async def unlock(self, key: str) -> None:
        self.locks.discard(key)


async def test_two_replicas_make_one_exchange(clock: MutableClock) -> None:
    store = SharedStore(clock)
    first, second = (TokenCache(store, clock, margin_s=0, wait_s=5) for _ in range(2))
    platform = Platform()
    platform.release.clear()
    answer = exchange_answer(token())
    leading = asyncio.ensure_future(first.exchange("demo", "c", "s", platform.fetcher(answer)))
    await asyncio.sleep(0)  # wait-ok: the first replica takes the lock
    following = asyncio.ensure_future(second.exchange("demo", "c", "s", platform.fetcher(answer)))
    platform.release.set()
    assert await leading == (answer, "miss")
    assert await following == (answer, "hit")
    assert platform.calls == 1
    assert store.locks == set()


async def test_a_replica_takes_over_when_the_first_exchange_fails(clock: MutableClock) -> None:
    store = SharedStore(clock)
    first, second = (TokenCache(store, clock, margin_s=0, wait_s=5) for _ in range(2))
    refused, platform = exchange_answer("", status=400), Platform()
    platform.release.clear()
    held_while_fetching: list[bool] = []

    async def fetch_holding_the_lock() -> CachedAnswer:
        held_while_fetching.append(bool(store.locks))
        return refused

    leading = asyncio.ensure_future(first.exchange("demo", "c", "s", platform.fetcher(refused)))
    await asyncio.sleep(0)  # wait-ok: the first replica takes the lock
    following = asyncio.ensure_future(second.exchange("demo", "c", "s", fetch_holding_the_lock))
    platform.release.set()
    assert (await leading)[0] == refused
    assert (await following)[0] == refused
    assert (platform.calls, held_while_fetching) == (1, [True])
    assert store.locks == set(), "the replica that took over released the lock"


async def test_a_code_sent_again_while_the_store_is_down_is_not_exchanged_again(
    clock: MutableClock,
) -> None:
    """A Redis failover: the answer could not be stored, so this process keeps it."""
    cache, platform = TokenCache(BrokenStore(10, clock), clock, margin_s=0, wait_s=5), Platform()
    answer = exchange_answer(token())
    assert await cache.exchange("demo", "c1", "s", platform.fetcher(answer)) == (answer, "miss")
    assert await cache.exchange("demo", "c1", "s", platform.fetcher(answer)) == (answer, "hit")
    assert platform.calls == 1
    await cache.evict("demo", token())
    await cache.exchange("demo", "c1", "s", platform.fetcher(answer))
    assert platform.calls == 2, "an evicted token's answer is forgotten here too"


class RecoveringView(SharedStore):
    """Another replica's view of the shared store: its first `failures` reads fail, as while
    it still skips a Redis that has just failed over; its lock fails while `lock_fails`."""

    def __init__(self, shared: SharedStore, failures: int, lock_fails: bool = False) -> None:
        super().__init__(shared._clock)
        self._entries = shared._entries
        self.locks = shared.locks
        self.failures = failures
        self.lock_fails = lock_fails

    async def get(self, key: str) -> bytes | None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("ConnectionError")
        return await super().get(key)

    async def lock(self, key: str, ttl_s: float) -> bool:
        if self.lock_fails:
            raise StoreError("ConnectionError")
        return await super().lock(key, ttl_s)


async def test_a_lock_taken_shows_the_store_is_back(clock: MutableClock) -> None:
    """The other replica cached the answer; this one's first look failed, and it would skip
    the store for a second: the lock it takes shows the store is back, so it looks again."""
    shared = SharedStore(clock)
    first = TokenCache(shared, clock, margin_s=0, wait_s=5)
    second = TokenCache(RecoveringView(shared, failures=1), clock, margin_s=0, wait_s=5)
    platform, answer = Platform(), exchange_answer(token())
    await first.exchange("demo", "c", "s", platform.fetcher(answer))
    assert await second.exchange("demo", "c", "s", platform.fetcher(answer)) == (answer, "hit")
    assert platform.calls == 1


async def test_a_refused_exchange_looks_in_the_store_again(clock: MutableClock) -> None:
    """Neither look nor lock reached the store: the platform refuses the code (exchanged by the
    other replica), and the answer that replica cached is the one given."""
    shared = SharedStore(clock)
    first = TokenCache(shared, clock, margin_s=0, wait_s=5)
    view = RecoveringView(shared, failures=1, lock_fails=True)
    second = TokenCache(view, clock, margin_s=0, wait_s=5)
    platform, answer = Platform(), exchange_answer(token())
    await first.exchange("demo", "c", "s", platform.fetcher(answer))
    refused = exchange_answer("", status=400)
    assert await second.exchange("demo", "c", "s", platform.fetcher(refused)) == (answer, "hit")
    assert platform.calls == 2
