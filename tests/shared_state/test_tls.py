"""The token store and the outbox over TLS to Redis behind Sentinel and to a Redis Cluster
(cache.sentinel.tls, cache.cluster.tls): every server of the set listens on TLS alone, so a
call that is answered went over TLS to the sentinels and the data nodes alike; a server whose
certificate the ca_file does not vouch for (or, behind Sentinel, that names another host) is
refused, and the refusal names no password."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.callbacks.outbox import RedisOutbox
from gateway.callbacks.outbox.base import PENDING, OutboxError
from gateway.config.model import RedisTarget
from gateway.core.secrets import Secret
from gateway.upstream.stores import RedisStore
from gateway.upstream.tokens import StoreError
from tests.support.redis_ha import ClusterSet, SentinelSet
from tests.support.redis_server import certificate

pytestmark = pytest.mark.e2e

DATA_PASSWORD = "tls-data-pw-5"
SENTINEL_PASSWORD = "tls-watch-pw-6"
PASSWORDS = (DATA_PASSWORD, SENTINEL_PASSWORD)
SENTINEL = pytest.param(
    {"password": DATA_PASSWORD, "sentinel_password": SENTINEL_PASSWORD, "tls": True}, id="tls"
)
CLUSTER = pytest.param({"password": DATA_PASSWORD, "tls": True}, id="tls")


def address(node: str) -> tuple[str, int]:
    host, port = node.rsplit(":", 1)
    return host, int(port)


def named(nodes: list[str], host: str) -> tuple[tuple[str, int], ...]:
    """The nodes by `host`: "localhost" is the same loopback under a name the certificate
    (made for the address 127.0.0.1) does not carry."""
    return tuple((host, address(node)[1]) for node in nodes)


def behind_sentinel(
    sentinels: SentinelSet, ca_file: Path | None, host: str = "127.0.0.1"
) -> RedisTarget:
    return RedisTarget(
        form="sentinel",
        nodes=named(sentinels.sentinel_nodes, host),
        master=sentinels.master_name,
        password=Secret(DATA_PASSWORD),
        sentinel_password=Secret(SENTINEL_PASSWORD),
        tls=True,
        ca_file=ca_file,
        timeout_s=2,
        # As cache.sentinel has it: each write waits for the replica, over TLS replication.
        wait_replicas=1,
        wait_timeout_s=2,
    )


def on_cluster(cluster: ClusterSet, ca_file: Path | None) -> RedisTarget:
    return RedisTarget(
        form="cluster",
        nodes=tuple(address(node) for node in cluster.startup_nodes),
        password=Secret(DATA_PASSWORD),
        tls=True,
        ca_file=ca_file,
        timeout_s=2,
        wait_replicas=1,
        wait_timeout_s=2,
    )


async def store_and_outbox_work(target: RedisTarget) -> None:
    store = RedisStore(target)
    try:
        await store.put("x:demo:code-1", b"token over tls", ttl_s=30)
        assert await store.get("x:demo:code-1") == b"token over tls"
        await store.delete("x:demo:code-1")
        assert await store.get("x:demo:code-1") is None
    finally:
        await store.close()
    outbox = RedisOutbox(target)
    try:
        assert await outbox.add("demo", "T-1", 200, b'{"paid": true}', now=1000.0)
        (due,) = await outbox.due(now=1000.0, limit=10, lease_s=30)
        assert (due.trade_no, due.payload) == ("T-1", b'{"paid": true}')
        await outbox.delivered(due.id)
        assert (await outbox.counts())[PENDING] == 0
    finally:
        await outbox.close()


def causes(error: BaseException) -> str:
    """The text of an error and of every error behind it."""
    text = []
    seen: BaseException | None = error
    while seen is not None:
        text.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(text)


async def refused(target: RedisTarget, expected: str) -> None:
    """The store and the outbox refuse a server they cannot verify (its certificate, or that
    it is the host asked for), and say so without a password (the outbox's message carries
    redis-py's, which names the sentinels' errors)."""
    store = RedisStore(target)
    try:
        with pytest.raises(StoreError) as store_error:
            await store.get("x:demo:code-1")
    finally:
        await store.close()
    outbox = RedisOutbox(target)
    try:
        with pytest.raises(OutboxError) as outbox_error:
            await outbox.add("demo", "T-2", 200, b"{}", now=1000.0)
    finally:
        await outbox.close()
    for caught in (store_error.value, outbox_error.value):
        chain = causes(caught)
        assert "CERTIFICATE_VERIFY_FAILED" in chain, chain
        assert expected in chain, chain
        for password in PASSWORDS:
            assert password not in chain, "a password in the error"


@pytest.mark.parametrize("redis_sentinel_set", [SENTINEL], indirect=True)
async def test_the_store_and_the_outbox_talk_tls_behind_sentinel(
    redis_sentinel_set: SentinelSet,
) -> None:
    await store_and_outbox_work(behind_sentinel(redis_sentinel_set, redis_sentinel_set.ca_file))


@pytest.mark.parametrize("redis_cluster_set", [CLUSTER], indirect=True)
async def test_the_store_and_the_outbox_talk_tls_to_a_cluster(
    redis_cluster_set: ClusterSet,
) -> None:
    await store_and_outbox_work(on_cluster(redis_cluster_set, redis_cluster_set.ca_file))


@pytest.mark.parametrize("redis_sentinel_set", [SENTINEL], indirect=True)
async def test_sentinels_whose_certificate_is_not_vouched_for_or_names_another_host_are_refused(
    redis_sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    other_ca, _key = await certificate(tmp_path)
    await refused(behind_sentinel(redis_sentinel_set, other_ca), "self-signed certificate")
    await refused(
        behind_sentinel(redis_sentinel_set, redis_sentinel_set.ca_file, "localhost"),
        "Hostname mismatch",
    )


@pytest.mark.parametrize("redis_cluster_set", [CLUSTER], indirect=True)
async def test_a_cluster_whose_certificate_the_ca_file_does_not_vouch_for_is_refused(
    redis_cluster_set: ClusterSet, tmp_path: Path
) -> None:
    # No host name check here: redis-py's cluster client turns "localhost" into 127.0.0.1
    # before it connects, and every node it learns of is named by address.
    other_ca, _key = await certificate(tmp_path)
    await refused(on_cluster(redis_cluster_set, other_ca), "self-signed certificate")
