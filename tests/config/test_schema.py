from __future__ import annotations

import logging
from typing import Any

import pytest

from gateway.config.load import from_mapping
from gateway.config.schema import without_credentials
from tests.config.documents import app, problems_of


def test_defaults() -> None:
    config = from_mapping({"apps": {"demo": app()}}, {"S": "s3cr3t"})
    assert (config.listen.host, config.listen.port) == ("127.0.0.1", 8080)
    assert config.listen.backlog == 1024
    assert config.default_app == "demo"
    assert config.timeouts.connect_s == 3
    assert config.timeouts.total_s == 15
    assert config.limits.max_body_bytes == 64 * 1024 * 1024
    assert config.apps["demo"].secret.reveal() == "s3cr3t"


@pytest.mark.parametrize(
    ("document", "environ", "expected"),
    [
        pytest.param(
            {"apps": {"demo": app(secret_env="NEU_SECRET_DEMO")}},
            {},
            "apps.demo.secret_env: environment variable NEU_SECRET_DEMO is not set",
            id="secret env var unset",
        ),
        pytest.param(
            {"apps": {"demo": app(secret_env="E")}},
            {"E": ""},
            "apps.demo.secret_env: environment variable E is empty",
            id="secret env var empty",
        ),
        pytest.param(
            {"apps": {"demo": app(secret_env=None, secret_file="/nonexistent/secret")}},
            None,
            "apps.demo.secret_file: cannot read /nonexistent/secret (No such file or directory)",
            id="secret file missing",
        ),
        pytest.param(
            {"apps": {"demo": app(secret="inline")}},
            None,
            "apps.demo: give exactly one of secret_env, secret_file or secret "
            "(found secret_env, secret)",
            id="two secret sources",
        ),
        pytest.param(
            {"apps": {"demo": app(secret_env=None)}},
            None,
            "apps.demo: give exactly one of secret_env, secret_file or secret",
            id="no secret source",
        ),
        pytest.param(
            {"apps": {"demo": app(upstream="ftp://x")}},
            None,
            "apps.demo.upstream: must be an http:// or https:// base URL",
            id="upstream not http",
        ),
        pytest.param(
            {"apps": {"demo": app(upstream="https://x/?a=1")}},
            None,
            "apps.demo.upstream: must not carry a query",
            id="upstream with query",
        ),
        pytest.param(
            {"apps": {"demo": app()}, "listen": {"port": 70000}},
            None,
            "listen.port: Input should be less than or equal to 65535",
            id="port out of range",
        ),
        pytest.param(
            {"apps": {"demo": app()}, "listen": {"backlog": 0}},
            None,
            "listen.backlog: Input should be greater than or equal to 1",
            id="no backlog",
        ),
        pytest.param(
            {"apps": {"demo": app()}, "timeouts": {"total_s": 0}},
            None,
            "timeouts.total_s: Input should be greater than 0",
            id="zero timeout",
        ),
        pytest.param(
            {"apps": {"demo": app()}, "limits": {"max_body_byte": 1}},
            None,
            "limits.max_body_byte: unknown option",
            id="misspelt option",
        ),
        pytest.param(
            {"apps": {"demo": app()}, "limits": {"min_body_rate_bytes_per_s": -1}},
            None,
            "limits.min_body_rate_bytes_per_s: Input should be greater than or equal to 0",
            id="negative body rate",
        ),
        pytest.param(
            {"apps": {"demo": app()}, "limits": {"body_rate_grace_s": 0}},
            None,
            "limits.body_rate_grace_s: Input should be greater than 0",
            id="no grace for a body's rate",
        ),
        pytest.param({"apps": {}}, None, "apps: ", id="no apps"),
        pytest.param({"listen": {}}, None, "apps: required", id="apps missing"),
        pytest.param(
            {"apps": {"a": app(), "b": app()}, "default_app": "c"},
            None,
            "default_app: 'c' is not one of apps (a, b)",
            id="unknown default app",
        ),
        pytest.param(
            {"apps": {"demo": app(upstream="${NEU_UPSTREAM}")}},
            {"S": "s"},
            "apps.demo.upstream: environment variable NEU_UPSTREAM is not set",
            id="unset variable in a value",
        ),
        pytest.param(
            {"apps": {"demo": app()}, "listen": {"host": "0.0.0.0"}},
            None,
            "listen.host: 0.0.0.0 is not a loopback address and no callers are configured",
            id="non-loopback listener refused",
        ),
    ],
)
def test_problems_name_the_field(
    document: dict[str, Any], environ: dict[str, str] | None, expected: str
) -> None:
    problems = problems_of(document, environ)
    assert any(problem.startswith(expected) for problem in problems), problems


@pytest.mark.parametrize(
    ("upstream", "suggested"),
    [
        pytest.param("sandobx", True, id="a near miss of sandbox"),
        pytest.param("Sandbox", True, id="sandbox capitalised"),
        pytest.param("sanbox", True, id="a letter short"),
        pytest.param("platform.example", False, id="a host without a scheme"),
        pytest.param("ftp://platform.example", False, id="another scheme"),
    ],
)
def test_an_upstream_neither_sandbox_nor_a_url_says_what_it_may_be(
    upstream: str, suggested: bool
) -> None:
    [problem] = problems_of({"apps": {"demo": app(upstream=upstream)}})
    assert problem.startswith(
        "apps.demo.upstream: must be an http:// or https:// base URL, e.g. "
        "https://platform.example, or sandbox for the embedded sandbox"
    )
    assert problem.endswith("; did you mean sandbox?") is suggested


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        {"apps": {"a": app(secret_env="A"), "b": app(secret_env="B")}}, environ={}
    )
    assert problems == [
        "apps.a.secret_env: environment variable A is not set",
        "apps.b.secret_env: environment variable B is not set",
    ]


def test_no_default_with_several_apps() -> None:
    config = from_mapping({"apps": {"a": app(), "b": app()}}, {"S": "s"})
    assert config.default_app is None


def test_anonymous_public_listener_needs_explicit_consent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    config = from_mapping(
        {"apps": {"demo": app()}, "listen": {"host": "0.0.0.0"}, "insecure_allow_anonymous": True},
        {"S": "s"},
    )
    assert config.listen.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@redis.internal:6379/0", "redis://redis.internal:6379/0"),
        ("rediss://user:pw@h:6380/0?ssl_ca_certs=/ca.pem", "rediss://h:6380/0"),
        ("unix:///run/redis.sock?password=pw&db=0", "unix:///run/redis.sock"),
        ("redis://:p@ss#w?rd@h/0", "redis://h/0"),
        ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
    ],
    ids=["password", "user and password, query", "unix socket", "raw @ # ? in it", "IPv6"],
)
def test_a_redis_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert without_credentials(url) == shown


def test_sandbox_upstream_and_settings() -> None:
    config = from_mapping(
        {
            "apps": {"demo": app(upstream="sandbox")},
            "sandbox": {"listen": {"port": 0}, "token_expire_s": 2, "explain": False},
        },
        {"S": "s"},
    )
    assert config.apps["demo"].uses_sandbox
    assert [a.name for a in config.sandbox_apps] == ["demo"]
    assert (config.sandbox.listen.port, config.sandbox.token_expire_s) == (0, 2)
    assert config.sandbox.explain is False


def test_sandbox_defaults() -> None:
    config = from_mapping({"apps": {"demo": app()}}, {"S": "s"})
    assert (config.sandbox.listen.host, config.sandbox.listen.port) == ("127.0.0.1", 8090)
    assert config.sandbox.explain is True
    assert config.sandbox_apps == []


def test_sandbox_listens_on_loopback_only() -> None:
    problems = problems_of({"apps": {"demo": app()}, "sandbox": {"listen": {"host": "0.0.0.0"}}})
    assert problems == ["sandbox.listen.host: the sandbox listens on a loopback address only"]


def test_the_sandbox_posts_login_codes_only_to_the_backend_hosts_it_is_given() -> None:
    from gateway.runtime.resources import sandbox_settings

    default = from_mapping({"apps": {"demo": app()}}, {"S": "s"})
    assert sandbox_settings(default).allowed_backend_hosts == frozenset()
    hosts = ["Backend.Internal", "10.0.0.5", "[FD00::1]"]
    config = from_mapping(
        {"apps": {"demo": app()}, "sandbox": {"allowed_backend_hosts": hosts}}, {"S": "s"}
    )
    assert sandbox_settings(config).allowed_backend_hosts == frozenset(
        {"backend.internal", "10.0.0.5", "fd00::1"}
    )


def test_a_backend_host_that_is_no_bare_host_is_named() -> None:
    hosts = ["ok.internal", "http://x", "x:80", "*.corp", "a/b"]
    [problem] = problems_of({"apps": {"demo": app()}, "sandbox": {"allowed_backend_hosts": hosts}})
    assert problem == (
        "sandbox.allowed_backend_hosts: 'http://x', 'x:80', '*.corp', 'a/b': each must be a "
        "bare host name or IP address, e.g. backend.internal or 10.0.0.5 (no scheme, port, "
        "path or wildcard)"
    )


def test_the_outbox_follows_the_cache() -> None:
    memory = from_mapping({"apps": {"demo": app()}}, {"S": "s"})
    assert memory.callbacks.store == "sqlite:///var/lib/neu-gateway/outbox.db"
    redis = from_mapping(
        {"apps": {"demo": app()}, "cache": {"backend": "redis", "url": "redis://127.0.0.1:6379/0"}},
        {"S": "s"},
    )
    assert redis.callbacks.store == "redis"
    problems = problems_of({"apps": {"demo": app()}, "callbacks": {"store": "redis"}})
    assert problems == ["callbacks.store: redis needs cache.backend: redis (its Redis is used)"]


def test_operations_sections_have_safe_defaults() -> None:
    config = from_mapping({"apps": {"demo": app()}}, {"S": "s3cr3t"})
    assert config.admin.listen is None
    assert config.logging.format is None
    assert (config.shutdown.drain_s, config.shutdown.timeout_s) == (5.0, 30.0)
    assert config.pid_file is None
    assert problems_of({"apps": {"demo": app()}, "logging": {"format": "xml"}})


def test_egress_settings_resolve_per_app() -> None:
    document = {
        "apps": {
            "a": app(),
            "b": app(proxy="direct", tls={"server_name": "platform.test"}),
            "c": app(proxy="env"),
        },
        "default_app": "a",
        "proxy": "http://user:proxy-pw@proxy.corp:3128",
        "tls": {"ca_mode": "add"},
    }
    config = from_mapping(document, {"S": "s3cr3t"})
    assert config.apps["a"].proxy == "http://user:proxy-pw@proxy.corp:3128"
    assert config.apps["b"].proxy is None
    assert config.apps["b"].tls.server_name == "platform.test"
    assert config.apps["c"].proxy == "env"
    assert "proxy-pw" in config.credentials(), "a proxy password is redacted from logs"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"proxy": "socks5://x:1"}, "proxy"),
        ({"tls": {"client_cert": "/c.pem"}}, "tls"),
        ({"tls": {"ca_mode": "only"}}, "tls"),
        ({"retries": {"endpoints": {"/neuopenapi/made/up": {"attempts": 2}}}}, "retries.endpoints"),
        ({"retries": {"attempts": 0}}, "retries.attempts"),
        ({"breaker": {"failures": 0}}, "breaker.failures"),
        ({"clock": {"max_skew_s": 0}}, "clock.max_skew_s"),
    ],
)
def test_bad_egress_settings_are_named(document: dict[str, Any], field: str) -> None:
    problems = problems_of({"apps": {"demo": app()}, **document})
    assert any(problem.startswith(field) for problem in problems), problems


def _caller_with(rate_limit: Any) -> dict[str, Any]:
    return {
        "apps": {"demo": app()},
        "callers": {
            "orders": {
                "token_env": "T",
                "apps": ["demo"],
                "allow": ["* /neuopenapi/*"],
                "rate_limit": rate_limit,
            }
        },
    }


def test_a_callers_rate_limit_and_its_default_burst() -> None:
    environ = {"S": "s3cr3t", "T": "t" * 32}
    config = from_mapping(_caller_with({"requests_per_s": 2.5}), environ)
    rate = config.callers["orders"].rate
    assert rate is not None
    assert (rate.per_s, rate.burst) == (2.5, 3)
    config = from_mapping(_caller_with({"requests_per_s": 10, "burst": 50}), environ)
    rate = config.callers["orders"].rate
    assert rate is not None
    assert (rate.per_s, rate.burst) == (10, 50)


@pytest.mark.parametrize(
    ("rate_limit", "problem"),
    [
        ({"requests_per_s": 0}, "callers.orders.rate_limit.requests_per_s"),
        ({"requests_per_s": -1}, "callers.orders.rate_limit.requests_per_s"),
        ({"requests_per_s": ".inf"}, "callers.orders.rate_limit.requests_per_s"),
        ({"requests_per_s": 1, "burst": 0}, "callers.orders.rate_limit.burst"),
        ({"burst": 5}, "callers.orders.rate_limit.requests_per_s"),
        ({"requests_per_s": 1, "per": "minute"}, "callers.orders.rate_limit.per"),
    ],
)
def test_a_bad_rate_limit_is_named(rate_limit: dict[str, Any], problem: str) -> None:
    problems = problems_of(_caller_with(rate_limit), {"S": "s3cr3t", "T": "t" * 32})
    assert any(problem in line for line in problems), problems


def _in_flight(caller: Any = None, **limits: Any) -> dict[str, Any]:
    orders: dict[str, Any] = {"token_env": "T", "apps": ["demo"], "allow": ["* /neuopenapi/*"]}
    if caller is not None:
        orders["max_in_flight"] = caller
    return {"apps": {"demo": app()}, "callers": {"orders": orders}, "limits": limits}


@pytest.mark.parametrize(
    ("limits", "default"),
    [
        ({}, 256),
        ({"max_connections": 10}, 2),
        ({"max_connections": 1}, 1),
        ({"max_in_flight_per_caller": 7}, 7),
        ({"max_connections": 8, "max_in_flight_per_caller": 8}, 8),
    ],
)
def test_the_default_max_in_flight_is_a_quarter_of_the_connections(
    limits: dict[str, Any], default: int
) -> None:
    config = from_mapping(_in_flight(**limits), {"S": "s3cr3t", "T": "t" * 32})
    assert config.limits.default_max_in_flight == default
    assert config.callers["orders"].max_in_flight is None


def test_a_callers_own_max_in_flight() -> None:
    config = from_mapping(_in_flight(3, max_connections=8), {"S": "s3cr3t", "T": "t" * 32})
    assert config.callers["orders"].max_in_flight == 3
    # Up to every connection, for a caller trusted with them all.
    config = from_mapping(_in_flight(8, max_connections=8), {"S": "s3cr3t", "T": "t" * 32})
    assert config.callers["orders"].max_in_flight == 8


@pytest.mark.parametrize(
    ("caller", "limits", "problem"),
    [
        (0, {}, "callers.orders.max_in_flight: Input should be greater than or equal to 1"),
        (-1, {}, "callers.orders.max_in_flight: Input should be greater than or equal to 1"),
        (1.5, {}, "callers.orders.max_in_flight: Input should be a valid integer"),
        ("many", {}, "callers.orders.max_in_flight: Input should be a valid integer"),
        (
            True,
            {},
            "callers.orders.max_in_flight: must be a whole number of requests, not true or false",
        ),
        (
            9,
            {"max_connections": 8},
            "callers.orders.max_in_flight: 9 is above limits.max_connections (8), so it would "
            "never be reached; give at most 8 (with that, this caller alone could hold every "
            "connection)",
        ),
        (
            None,
            {"max_in_flight_per_caller": 0},
            "limits.max_in_flight_per_caller: Input should be greater than or equal to 1",
        ),
        (
            None,
            {"max_in_flight_per_caller": "yes"},
            "limits.max_in_flight_per_caller: Input should be a valid integer",
        ),
        (
            None,
            {"max_in_flight_per_caller": False},
            "limits.max_in_flight_per_caller: must be a whole number of requests, not true or "
            "false",
        ),
        (
            None,
            {"max_in_flight_per_caller": 2000},
            "limits.max_in_flight_per_caller: 2000 is above limits.max_connections (1024), so "
            "it would never be reached; give at most 1024 (with that, this caller alone could "
            "hold every connection)",
        ),
    ],
)
def test_a_bad_max_in_flight_is_named(caller: Any, limits: dict[str, Any], problem: str) -> None:
    problems = problems_of(_in_flight(caller, **limits), {"S": "s3cr3t", "T": "t" * 32})
    assert any(line.startswith(problem) for line in problems), problems


def test_a_max_in_flight_from_the_environment() -> None:
    document = _in_flight("${ORDERS_IN_FLIGHT}", max_in_flight_per_caller="${DEFAULT_IN_FLIGHT}")
    environ = {"S": "s3cr3t", "T": "t" * 32, "ORDERS_IN_FLIGHT": "5", "DEFAULT_IN_FLIGHT": "9"}
    config = from_mapping(document, environ)
    assert config.callers["orders"].max_in_flight == 5
    assert config.limits.default_max_in_flight == 9


REDIS = {"backend": "redis", "url": "redis://127.0.0.1:6379/0"}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(
            {"admin": {"ready_requires": ["cache", "redis", "db"]}},
            "admin.ready_requires: 'redis', 'db': the backends readiness can require are "
            "cache, outbox",
            id="an unknown backend is named with the allowed ones",
        ),
        pytest.param(
            {"admin": {"ready_requires": ["cache"]}},
            "admin: ready_requires: cache needs cache.backend: redis (the memory cache is this "
            "process's own and cannot be down)",
            id="the memory cache cannot be required",
        ),
        pytest.param(
            {"cache": REDIS, "admin": {"ready_requires": ["outbox"]}},
            "admin: ready_requires: outbox needs callbacks.listen (without it there is no outbox)",
            id="no outbox without callbacks.listen",
        ),
    ],
)
def test_ready_requires_names_only_backends_this_process_opens(
    document: dict[str, Any], expected: str
) -> None:
    assert problems_of({"apps": {"demo": app()}, **document}) == [expected]


def test_ready_requires_defaults_to_nothing_and_takes_each_backend_once() -> None:
    assert from_mapping({"apps": {"demo": app()}}, {"S": "s"}).admin.ready_requires == []
    document = {
        "apps": {"demo": app()},
        "cache": REDIS,
        "callbacks": {"listen": {"port": 8081}},
        "admin": {"ready_requires": ["outbox", "cache", "outbox"]},
    }
    assert from_mapping(document, {"S": "s"}).admin.ready_requires == ["outbox", "cache"]
