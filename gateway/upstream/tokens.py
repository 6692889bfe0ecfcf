"""The accessToken cache: each login code exchanged once, tokens found again by openId.

A successful exchange answer is kept under (app, code, scope) and the token under
(app, openId), both for the token's life: the smaller of the answer's `expire` and the JWT's
`exp`, less a safety margin. Identical exchanges in flight share one upstream call (one
flight per key in this process; a short lock in the store across replicas). The store is
memory (bounded LRU) or Redis; when Redis fails, exchanges go straight to the platform and
lookups by openId raise CacheUnavailable, until Redis answers again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from cachetools import TLRUCache

from gateway import logs
from gateway.core import jwt
from gateway.core.clock import Clock
from gateway.core.errors import CacheUnavailable
from gateway.core.flights import SingleFlight
from gateway.core.platform import is_sign_refusal, platform_status

log = logs.logger("neu_gateway.tokens")
T = TypeVar("T")

# How long a store stays skipped after it failed, so an outage does not slow every request.
RETRY_STORE_AFTER_S = 1.0
LOCK_POLL_S = 0.05
# Exchange answers this process keeps itself, beside a shared store.
RECENT_MAX = 1000


class StoreError(Exception):
    """The store did not answer; the cache carries on without it."""


class Store(Protocol):
    shared: bool

    async def get(self, key: str) -> bytes | None: ...
    async def put(self, key: str, value: bytes, ttl_s: float) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def lock(self, key: str, ttl_s: float) -> bool: ...
    async def count(self, prefix: str) -> int: ...
    async def ping(self) -> None: ...
    async def unlock(self, key: str) -> None: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class CachedAnswer:
    """What the cache keeps of an exchange's answer (gateway.upstream.transport.Answer) and
    gives a caller on a hit: status, content type, body. Its other headers belong to the
    exchange that fetched it (a Date, a Set-Cookie), not to later callers."""

    status: int
    content_type: str
    body: bytes

    def dumps(self) -> bytes:
        return json.dumps(
            {"s": self.status, "t": self.content_type, "b": base64.b64encode(self.body).decode()}
        ).encode()

    @classmethod
    def loads(cls, data: bytes) -> CachedAnswer:
        raw = json.loads(data)
        return cls(int(raw["s"]), str(raw["t"]), base64.b64decode(raw["b"]))


@dataclass(frozen=True)
class IssuedToken:
    token: str
    open_id: str
    life_s: float


def issued_token(answer: CachedAnswer, now_s: float, margin_s: float) -> IssuedToken | None:
    """The token a successful exchange answer carries, and how long it may be served."""
    status, response = platform_status(answer.body)
    if answer.status != 200 or status != 200 or not isinstance(response, dict):
        return None
    token, expire = response.get("accessToken"), response.get("expire")
    if not isinstance(token, str) or not token:
        return None
    claims = jwt.unverified_claims(token) or {}
    open_id, exp = claims.get("openId"), claims.get("exp")
    lives = [float(v) for v in (expire,) if isinstance(v, int | float)]
    if isinstance(exp, int | float):
        lives.append(float(exp) - now_s)
    if not isinstance(open_id, str) or not open_id or not lives:
        return None
    return IssuedToken(token, open_id, max(0.0, min(lives) - margin_s))


def _succeeded(answer: CachedAnswer) -> bool:
    return answer.status == 200 and platform_status(answer.body)[0] == 200


def says_token_invalid(answer: CachedAnswer) -> bool:
    """The platform refused the accessToken (401 in the envelope or on the wire). A refused
    sign is a 401 too, but says nothing of the token: evicting it would log every user out
    for a wrong secret."""
    refused = answer.status == 401 or platform_status(answer.body)[0] == 401
    return refused and not is_sign_refusal(answer.status, answer.body)


def _digest(secret: str) -> str:
    # Codes and tokens are credentials: keys hold their digests, never the values.
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def _uncounted(app: str, result: str) -> None:
    return None


class TokenCache:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        margin_s: float,
        wait_s: float,
        count: Callable[[str, str], None] = _uncounted,
    ) -> None:
        """`count(app, result)` is told of each hit, miss, shared exchange and eviction."""
        self._count = count
        self._store = store
        self._clock = clock
        self._margin_s = margin_s
        self._wait_s = wait_s
        self._flights: SingleFlight[str, tuple[CachedAnswer, str]] = SingleFlight()
        # The answers this process fetched, kept here too when the store is shared: the same
        # code sent again to this process is answered from here, not exchanged a second time
        # (which the platform refuses), whatever Redis does meanwhile (a failover, a slot of
        # a Cluster away, a write lost), until the token's end.
        self._recent: TLRUCache[str, tuple[CachedAnswer, float]] = TLRUCache(
            maxsize=RECENT_MAX,
            ttu=lambda _key, value, _now: value[1],
            timer=lambda: clock.now_ms() / 1000,
        )
        self._skip_store_until = 0.0
        self._store_down = False

    @property
    def store(self) -> Store:
        return self._store

    async def exchange(
        self, app: str, code: str, scope: str, fetch: Callable[[], Awaitable[CachedAnswer]]
    ) -> tuple[CachedAnswer, str]:
        """The answer to exchanging this code, and where it came from.

        `hit`: the cache (this replica's store or another replica's answer); `shared`: an
        exchange of the same code under way here, success or failure; `miss`: the platform.
        """
        scopes = ",".join(sorted({s.strip() for s in scope.split(",") if s.strip()}))
        key = f"x:{app}:{_digest(code)}:{scopes}"
        cached = await self._get_answer(key)
        if cached is not None:
            self._count(app, "hit")
            return cached, "hit"
        (answer, state), shared = await self._flights.run(
            key, lambda: self._exchange_once(app, key, fetch)
        )
        result = "shared" if shared else state
        self._count(app, result)
        return answer, result

    async def entries(self) -> int:
        """Cached tokens (one entry each, however many keys point at it)."""
        return await self._store.count("t:")

    async def _exchange_once(
        self, app: str, key: str, fetch: Callable[[], Awaitable[CachedAnswer]]
    ) -> tuple[CachedAnswer, str]:
        lock_key = f"lock:{key}"
        locked = await self._lock(lock_key)
        if not locked:
            found, locked = await self._await_other_replica(key, lock_key)
            if found is not None:
                return found, "hit"
        try:
            cached = await self._get_answer(key)
            if cached is not None:
                return cached, "hit"
            answer = await fetch()
            if not _succeeded(answer):
                # Refused: perhaps as a code exchanged already, by a replica that cached the
                # answer while this one was skipping the store (an outage just ended).
                found = await self._look_again(key)
                if found is not None:
                    return found, "hit"
            await self._remember(app, key, answer)
            return answer, "miss"
        finally:
            if locked:
                await self._call(self._store.unlock(lock_key), None)

    async def _await_other_replica(
        self, key: str, lock_key: str
    ) -> tuple[CachedAnswer | None, bool]:
        """Another replica holds the lock: wait for its answer, or take the lock when it goes.

        Returns the answer, or None and whether this replica now holds the lock (it does not
        when the wait ran out; the platform then refuses a second exchange by itself).
        """
        deadline = self._clock.monotonic() + self._wait_s
        while self._clock.monotonic() < deadline:
            await self._clock.sleep(LOCK_POLL_S)
            cached = await self._get(key)
            if cached is not None:
                return CachedAnswer.loads(cached), False
            if await self._lock(lock_key):
                return None, True
        return None, False

    async def _look_again(self, key: str) -> CachedAnswer | None:
        """The store's answer for `key`, asked even while it is being skipped."""
        try:
            cached = await self._store.get(key)
        except StoreError:
            return None
        self._recovered()
        return CachedAnswer.loads(cached) if cached is not None else None

    async def _get_answer(self, key: str) -> CachedAnswer | None:
        kept = self._recent.get(key)
        if kept is not None:
            return kept[0]
        cached = await self._get(key)
        return CachedAnswer.loads(cached) if cached is not None else None

    async def _remember(self, app: str, key: str, answer: CachedAnswer) -> None:
        now_s = self._clock.now_ms() / 1000
        issued = issued_token(answer, now_s, self._margin_s)
        if issued is None or issued.life_s <= 0:
            return
        life = issued.life_s
        if self._store.shared:
            self._recent[key] = (answer, now_s + life)
        await self._put(key, answer.dumps(), life)
        await self._put(f"o:{app}:{issued.open_id}", issued.token.encode(), life)
        await self._put(f"t:{app}:{_digest(issued.token)}", key.encode(), life)

    async def _put(self, key: str, value: bytes, life_s: float) -> None:
        await self._call(self._store.put(key, value, life_s), None)

    async def token_for(self, app: str, open_id: str) -> str | None:
        """The live token cached for this user, None if there is none."""
        if self._skipping():
            raise CacheUnavailable()
        try:
            value = await self._store.get(f"o:{app}:{open_id}")
        except StoreError as exc:
            self._failed(exc)
            raise CacheUnavailable() from exc
        self._recovered()
        self._count(app, "miss" if value is None else "hit")
        return value.decode() if value is not None else None

    async def evict(self, app: str, token: str) -> None:
        """Forget a token the platform refused, wherever it is kept."""
        claims = jwt.unverified_claims(token) or {}
        token_key = f"t:{app}:{_digest(token)}"
        exchange_key = await self._get(token_key)
        keys = [token_key] + ([exchange_key.decode()] if exchange_key else [])
        for kept_key, (answer, _) in list(self._recent.items()):
            if token.encode() in answer.body:
                self._recent.pop(kept_key, None)
        open_id = claims.get("openId")
        if isinstance(open_id, str):
            by_open_id = f"o:{app}:{open_id}"
            if await self._get(by_open_id) == token.encode():
                keys.append(by_open_id)
        await self._call(self._store.delete(*keys), None)
        self._count(app, "evicted")
        log.info("evicted an accessToken the platform refused (app %s)", app)

    async def _get(self, key: str) -> bytes | None:
        return await self._call(self._store.get(key), None)

    async def _lock(self, key: str) -> bool:
        # Without a shared store, the Future per key is all the single flight there is.
        if not self._store.shared:
            return True
        # Asked even while the store is skipped: it is the single flight across replicas, and
        # one call per exchange. Taken, it shows the store is back, so the cache is looked in
        # at once rather than a second later, after the platform was asked a second time.
        try:
            locked = await self._store.lock(key, self._wait_s + 5)
        except StoreError as exc:
            # Alone, then: the platform refuses a code another replica exchanged meanwhile.
            self._failed(exc)
            return True
        self._recovered()
        return locked

    async def _call(self, operation: Awaitable[T], fallback: T) -> T:
        if self._skipping():
            if asyncio.iscoroutine(operation):
                operation.close()
            return fallback
        try:
            result = await operation
        except StoreError as exc:
            self._failed(exc)
            return fallback
        self._recovered()
        return result

    def _skipping(self) -> bool:
        return self._store_down and self._clock.monotonic() < self._skip_store_until

    def _failed(self, exc: StoreError) -> None:
        self._skip_store_until = self._clock.monotonic() + RETRY_STORE_AFTER_S
        if not self._store_down:
            self._store_down = True
            log.warning(
                "token cache store unavailable (%s): exchanges go straight to the platform, "
                "lookups by openId answer 503 until it is back",
                exc,
            )

    def _recovered(self) -> None:
        if self._store_down:
            self._store_down = False
            log.warning("token cache store is back")
