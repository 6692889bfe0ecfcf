"""cache.url, cache.sentinel and cache.cluster: exactly one, read into one RedisTarget with its
passwords, and never printed with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config.load import from_mapping
from tests.config.documents import app, problems_of

SENTINELS = ["10.0.0.1:26379", "10.0.0.2:26379", "[fd00::3]:26379"]


def with_cache(**cache: Any) -> dict[str, Any]:
    return {"apps": {"demo": app()}, "cache": cache}


def test_sentinel_is_read_with_its_passwords(tmp_path: Path) -> None:
    (tmp_path / "sentinel-pw").write_text("sentinel-s3cret\n")
    config = from_mapping(
        with_cache(
            backend="redis",
            sentinel={
                "master": "neu",
                "nodes": SENTINELS,
                "password_env": "REDIS_PW",
                "sentinel_password_file": str(tmp_path / "sentinel-pw"),
                "username": "gateway",
            },
        ),
        {"S": "s3cr3t", "REDIS_PW": "redis-s3cret"},
    )
    redis = config.redis
    assert redis is not None
    assert redis.form == "sentinel"
    assert redis.master == "neu"
    assert redis.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("fd00::3", 26379))
    assert redis.password is not None
    assert redis.password.reveal() == "redis-s3cret"
    assert redis.sentinel_password is not None
    assert redis.sentinel_password.reveal() == "sentinel-s3cret"
    assert redis.wait_replicas == 1, "a failover must not lose an acknowledged write"
    assert "redis-s3cret" in config.credentials()
    assert "sentinel-s3cret" in config.credentials()
    assert "s3cret" not in redis.where
    assert redis.where.startswith("redis master neu behind sentinels 10.0.0.1:26379")
    assert config.callbacks.store == "redis", "the outbox follows the cache to Sentinel"


def test_cluster_is_read() -> None:
    config = from_mapping(
        with_cache(backend="redis", cluster={"nodes": ["r0:6379", "r1:6379"], "tls": True}),
        {"S": "s3cr3t"},
    )
    assert config.redis is not None
    assert (config.redis.form, config.redis.tls, config.redis.wait_replicas) == ("cluster", True, 1)
    assert config.redis.where == "redis cluster at r0:6379,r1:6379"


def test_a_url_waits_for_no_replica_unless_told() -> None:
    url = "redis://:pw-in-url@127.0.0.1:6379/0"
    plain = from_mapping(with_cache(backend="redis", url=url), {"S": "s"})
    assert plain.redis is not None
    assert plain.redis.wait_replicas == 0
    assert "pw-in-url" in plain.credentials()
    assert plain.redis.where == "redis at redis://127.0.0.1:6379/0"
    told = from_mapping(with_cache(backend="redis", url=url, wait_replicas=2), {"S": "s"})
    assert told.redis is not None
    assert told.redis.wait_replicas == 2


def test_the_memory_cache_has_no_redis() -> None:
    assert from_mapping({"apps": {"demo": app()}}, {"S": "s"}).redis is None


@pytest.mark.parametrize(
    ("cache", "problem"),
    [
        ({"backend": "redis"}, "backend redis needs exactly one of url, sentinel or cluster"),
        (
            {"backend": "redis", "url": "redis://r:6379", "cluster": {"nodes": ["r:6379"]}},
            "(given: url, cluster)",
        ),
        ({"cluster": {"nodes": ["r:6379"]}}, "cluster: needs backend: redis"),
        ({"backend": "memory", "sentinel": {"master": "m", "nodes": ["s:1"]}}, "needs backend"),
        ({"backend": "redis", "cluster": {"nodes": ["r"]}}, "'r' is not host:port"),
        ({"backend": "redis", "cluster": {"nodes": ["r:0"]}}, "is not host:port"),
        ({"backend": "redis", "cluster": {"nodes": ["r:6379/1"]}}, "is not host:port"),
        ({"backend": "redis", "cluster": {"nodes": ["r:1", "r:1"]}}, "listed twice"),
        ({"backend": "redis", "cluster": {"nodes": []}}, "at least 1 item"),
        ({"backend": "redis", "sentinel": {"nodes": ["s:1"]}}, "master"),
        (
            {"backend": "redis", "sentinel": {"master": "a b", "nodes": ["s:1"]}},
            "should match pattern",
        ),
        (
            {
                "backend": "redis",
                "cluster": {"nodes": ["r:1"], "password_env": "A", "password_file": "/x"},
            },
            "at most one of password_env or password_file",
        ),
        (
            {"backend": "redis", "cluster": {"nodes": ["r:1"], "ca_file": "/ca.pem"}},
            "ca_file needs tls: true",
        ),
        ({"key_prefix": "neu:{x}:"}, "must not hold { or }"),
        ({"backend": "redis", "url": "redis://r:1", "wait_replicas": -1}, "greater than or equal"),
    ],
)
def test_a_wrong_redis_is_named(cache: dict[str, Any], problem: str) -> None:
    problems = problems_of(with_cache(**cache))
    assert len(problems) == 1, problems
    assert problems[0].startswith("cache"), problems
    assert problem in problems[0]


def test_a_missing_password_is_named_by_its_key() -> None:
    document = with_cache(
        backend="redis",
        sentinel={"master": "neu", "nodes": SENTINELS, "sentinel_password_env": "SENTINEL_PW"},
    )
    assert problems_of(document) == [
        "cache.sentinel.sentinel_password_env: environment variable SENTINEL_PW is not set"
    ]


def test_a_shared_rate_limit_needs_redis() -> None:
    caller = {
        "token_env": "T",
        "apps": ["demo"],
        "allow": ["* /neuopenapi/*"],
        "rate_limit": {"requests_per_s": 20, "scope": "shared"},
    }
    document = {"apps": {"demo": app()}, "callers": {"svc": caller}}
    assert problems_of(document, {"S": "s", "T": "t" * 32}) == [
        "callers.svc.rate_limit.scope: shared needs cache.backend: redis (the count is kept "
        "there, for every process and replica)"
    ]
    document["cache"] = {"backend": "redis", "url": "redis://127.0.0.1:6379/0"}
    config = from_mapping(document, {"S": "s", "T": "t" * 32})
    rate = config.callers["svc"].rate
    assert rate is not None
    assert rate.shared
