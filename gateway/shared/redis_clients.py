"""Clients of the shared Redis, made from cache.url, cache.sentinel or cache.cluster.

Following a failover is redis-py's work: a Sentinel-managed pool asks the sentinels where the
master is whenever it connects (and drops its connections when the old master answers as a
replica), a RedisCluster client re-learns the slots when a node fails or answers MOVED. What
is ours is only which client serves which store:

- the token cache and the rate limits: the whole Redis (keys spread over a Cluster's slots);
- the outbox: one primary (`PrimaryLink`). Its keys share one hash tag, so on a Cluster they
  live in one slot, and its Lua scripts, WAIT and pub/sub need one connection to that slot's
  primary, which redis-py's cluster client does not give (WAIT on it goes to every node).

redis-py is imported only here, when a Redis is used: it costs a gateway without Redis about
10 MB of memory.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from gateway.config.model import RedisTarget
from gateway.shared.replication import ReplicaWait

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.sentinel import Sentinel

# redis-py retries a failed call 10 times by default, with a backoff of up to a second: a
# Redis that is down would hold each call for seconds. Twice, quickly: a stale connection (the
# old master's, an idle one the server closed) gets one fresh try; longer outages are the
# callers' to handle (the cache skips Redis, a callback is refused 503, a delivery waits).
# Never after a timeout: the command was sent and may still run (a WAIT outlasting the socket's
# timeout, a frozen server that wakes), so a retry would run a script twice (a failed delivery
# counted twice), and a call would take its timeout three times.
RETRIES = 2
RETRY_BASE_S = 0.02
RETRY_CAP_S = 0.1


def _retry() -> Any:
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError

    backoff = ExponentialBackoff(cap=RETRY_CAP_S, base=RETRY_BASE_S)
    return Retry(backoff, RETRIES, supported_errors=(ConnectionError,))


def connection_options(target: RedisTarget) -> dict[str, Any]:
    """What every connection to a data node takes: timeouts, retries, credentials, TLS."""
    options: dict[str, Any] = {
        "socket_timeout": _read_timeout_s(target),
        "socket_connect_timeout": target.timeout_s,
        "retry": _retry(),
    }
    if target.username is not None:
        options["username"] = target.username
    if target.password is not None:
        options["password"] = target.password.reveal()
    if target.tls:
        options.update(_tls_options(target))
    return options


def _read_timeout_s(target: RedisTarget) -> float:
    # A write followed by WAIT may take wait_timeout_s on top of its own time: within the
    # socket's timeout, it ends as "not acknowledged", not as a timeout that leaves unknown
    # whether the write was made.
    return target.timeout_s + (target.wait_timeout_s if target.wait_replicas else 0.0)


def _tls_options(target: RedisTarget) -> dict[str, Any]:
    # The host name is checked whatever redis-py's default: before 6.0 it was not.
    options: dict[str, Any] = {"ssl": True, "ssl_check_hostname": True}
    if target.ca_file is not None:
        options["ssl_ca_certs"] = str(target.ca_file)
    return options


def open_cluster(target: RedisTarget) -> RedisCluster:
    """A client of the whole Cluster: any key, on whichever node holds it."""
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        **connection_options(target),
    )


def open_primary(target: RedisTarget) -> Redis:
    """A client of the one server (url) or of the master behind Sentinel."""
    if target.form == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        sentinel_options: dict[str, Any] = {
            "socket_timeout": target.timeout_s,
            "socket_connect_timeout": target.timeout_s,
            "retry": _retry(),
        }
        if target.sentinel_password is not None:
            sentinel_options["password"] = target.sentinel_password.reveal()
        if target.tls:
            sentinel_options.update(_tls_options(target))
        sentinel = Sentinel(
            list(target.nodes), sentinel_kwargs=sentinel_options, **connection_options(target)
        )
        master: Redis = sentinel.master_for(target.master or "")
        _sentinels[master] = sentinel
        return master
    if target.url is None:
        raise ValueError(f"a {target.form} Redis has no single server")
    import redis.asyncio as aioredis

    client: Redis = aioredis.from_url(
        target.url,
        socket_timeout=_read_timeout_s(target),
        socket_connect_timeout=target.timeout_s,
        retry=_retry(),
    )
    return client


# The Sentinel behind each master client open_primary made: its clients of the sentinels are
# closed with the master's (close_client).
_sentinels: weakref.WeakKeyDictionary[Redis, Sentinel] = weakref.WeakKeyDictionary()


async def close_client(client: Redis | RedisCluster) -> None:
    """Closes a client this module made, with the connections it keeps to sentinels."""
    await client.aclose()
    sentinel = _sentinels.pop(client, None)  # type: ignore[arg-type]
    if sentinel is not None:
        for each in sentinel.sentinels:
            await each.aclose()


class PrimaryLink:
    """The primary that holds one hash slot (a Cluster), or the one master (url, Sentinel).

    On a Cluster, a plain client to the node the cluster client names for `anchor_key`; after
    a failure (`failed()`), the next `client()` asks the cluster client again, which has then
    learnt of a failover (a call through it for that key makes it look).
    """

    def __init__(self, target: RedisTarget, anchor_key: str) -> None:
        self._target = target
        self._anchor = anchor_key
        self._cluster: RedisCluster | None = None
        self._client: Redis | None = None
        self._stale: list[Redis] = []
        if target.form == "cluster":
            self._cluster = open_cluster(target)
        else:
            self._client = open_primary(target)

    async def client(self) -> Redis:
        if self._client is not None:
            return self._client
        if self._cluster is None:
            raise RuntimeError("the link is closed")
        await self._close_stale()
        # A keyed call through the cluster client follows a failover or a MOVED slot.
        await self._cluster.exists(self._anchor)
        node = self._cluster.get_node_from_key(self._anchor)
        if node is None:
            from redis.exceptions import ClusterDownError

            raise ClusterDownError(f"no primary holds the slot of {self._anchor}")
        from redis.asyncio import Redis

        self._client = Redis(
            host=node.host, port=int(node.port), **connection_options(self._target)
        )
        return self._client

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[Redis]:
        """The client, for calls that, should one fail as a moved primary would, leave the
        link to look again."""
        client = await self.client()
        try:
            yield client
        except Exception as exc:
            # Not on an answer the primary gave (out of memory, replicas lagging): the slot
            # has not moved, and a client left behind at each such write, with its open
            # connection, would pile up for as long as the primary keeps refusing.
            if _may_have_moved(exc):
                self.failed()
            raise

    def failed(self) -> None:
        """The last call failed: on a Cluster, the slot may have another primary now."""
        if self._cluster is not None and self._client is not None:
            self._stale.append(self._client)
            self._client = None

    async def _close_stale(self) -> None:
        stale, self._stale = self._stale, []
        for client in stale:
            await client.aclose()

    async def close(self) -> None:
        await self._close_stale()
        if self._client is not None:
            await close_client(self._client)
            self._client = None
        if self._cluster is not None:
            await self._cluster.aclose()
            self._cluster = None


def _may_have_moved(exc: Exception) -> bool:
    """Whether a failed call could mean that another node serves the slot now."""
    from redis.exceptions import (
        ClusterDownError,
        ConnectionError,
        MasterDownError,
        MovedError,
        ReadOnlyError,
        TimeoutError,
        TryAgainError,
    )

    moved = (ClusterDownError, MasterDownError, MovedError, ReadOnlyError, TryAgainError)
    return isinstance(exc, (ConnectionError, TimeoutError, OSError, *moved))


class ClusterPrimaries:
    """Plain clients of a Cluster's primaries, one a node, for writes that WAIT: WAIT counts
    what the connection that wrote has reached the replicas, and redis-py's cluster client
    sends it to every node instead. Which node holds a key is the cluster client's to say."""

    def __init__(self, cluster: RedisCluster, target: RedisTarget) -> None:
        self._cluster = cluster
        self._target = target
        self._clients: dict[str, tuple[Redis, ReplicaWait]] = {}
        # At first, the cluster client may not have learnt the slots yet.
        self._look_again = True

    async def write(self, key: str, queue: Callable[[Pipeline], object]) -> list[Any]:
        """Runs what `queue` adds to a pipeline on the primary of `key`, then WAITs there. A
        primary gone (failed over, the slot moved) is looked for again once at once: the
        cluster client's map of the slots is only as fresh as its own last error."""
        try:
            return await self._write_once(key, queue)
        except Exception as exc:
            if not _may_have_moved(exc):
                raise
        return await self._write_once(key, queue)

    async def _write_once(self, key: str, queue: Callable[[Pipeline], object]) -> list[Any]:
        if self._look_again:
            # A keyed call through the cluster client follows a failover or a MOVED slot.
            await self._cluster.exists(key)
            self._look_again = False
        node = self._cluster.get_node_from_key(key)
        if node is None:
            from redis.exceptions import ClusterDownError

            raise ClusterDownError("no primary holds the key's slot")
        held = self._clients.get(node.name)
        if held is None:
            from redis.asyncio import Redis

            client = Redis(host=node.host, port=int(node.port), **connection_options(self._target))
            held = self._clients[node.name] = (
                client,
                ReplicaWait(self._target.wait_replicas, self._target.wait_timeout_s),
            )
        client, replicas = held
        try:
            return await replicas.write(client, queue)
        except Exception as exc:
            if _may_have_moved(exc):
                self._look_again = True
                del self._clients[node.name]
                await client.aclose()
            raise

    async def close(self) -> None:
        held, self._clients = self._clients, {}
        for client, _ in held.values():
            await client.aclose()
