"""The shape of gateway.yaml as pydantic models: every option, its default and its bounds.

Unknown keys are refused, so a misspelt option is an error, not silently ignored.

One job, over 400 lines: a section a model, each with its bounds and the reason for them, read
top to bottom as the reference of gateway.yaml; split, a section would be looked for in two places.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from yarl import URL

from gateway.core.access import Route
from gateway.core.endpoints import ENDPOINTS
from gateway.core.errors import quoted_name
from gateway.core.hosts import host_name
from gateway.core.ratelimit import Rate

DEFAULT_CONFIG_PATH = Path("gateway.yaml")
SANDBOX = "sandbox"
# `proxy: env`: HTTPS_PROXY / HTTP_PROXY and NO_PROXY, as curl reads them.
PROXY_FROM_ENV = "env"
# An app's `proxy: direct`: no proxy for it, whatever the top-level one.
PROXY_DIRECT = "direct"
MIB = 1 << 20

_APP_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    # Unknown keys are refused so a misspelt option is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


# Connections the kernel holds for a listener until they are accepted. aiohttp's 128 overflows
# when hundreds of callers connect at once: the kernel then drops their handshakes, and each
# dropped one costs its caller a second or more of retransmission. (The kernel caps it at
# net.core.somaxconn.)
DEFAULT_BACKLOG = 1024


class ListenConfig(_Model):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    backlog: Annotated[int, Field(ge=1, le=65535)] = DEFAULT_BACKLOG

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AppCallbacksConfig(_Model):
    """What happens to this app's payment callbacks from the platform."""

    verify_sign: bool = True
    deliver_to: str | None = None

    @field_validator("deliver_to")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and (
            URL(value).scheme not in ("http", "https") or not URL(value).host
        ):
            raise ValueError("must be an http:// or https:// URL of the internal service")
        return value


class TlsConfig(_Model):
    """How the gateway trusts an https upstream, and proves itself to one that asks."""

    # A private CA's certificates (PEM), trusted besides the system's (ca_mode: add) or alone.
    ca_file: Path | None = None
    ca_mode: Literal["add", "only"] = "add"
    # Mutual TLS, e.g. over a leased line: both or neither.
    client_cert: Path | None = None
    client_key: Path | None = None
    # The name to ask for (SNI) and to verify, when the upstream URL names an IP address.
    server_name: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together: give both or neither")
        if self.ca_mode == "only" and self.ca_file is None:
            raise ValueError("ca_mode: only needs a ca_file")
        return self


def resolved_proxy(value: str | None) -> str | None:
    return None if value == PROXY_DIRECT else value


def _proxy(value: str | None) -> str | None:
    if value is None or value in (PROXY_FROM_ENV, PROXY_DIRECT):
        return value
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"must be {PROXY_FROM_ENV!r} (HTTPS_PROXY, NO_PROXY), {PROXY_DIRECT!r} (none) or "
            "the proxy's URL, http://[user:password@]host:port"
        )
    return value


class AppConfig(_Model):
    appid: Annotated[str, Field(min_length=1)]
    secret_env: str | None = None
    secret_file: Path | None = None
    secret: str | None = None
    upstream: str
    callbacks: AppCallbacksConfig = AppCallbacksConfig()
    # The app's own egress settings, instead of the top-level ones.
    tls: TlsConfig | None = None
    proxy: str | None = None
    # `off`: only required parameters are checked, not the doc's lists of values.
    validation: Literal["doc", "off"] = "doc"

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        return _proxy(value)

    @field_validator("validation", mode="before")
    @classmethod
    def _doc_or_off(cls, value: Any) -> Any:
        # YAML 1.1 reads the README's unquoted `validation: off` as false (and `on` as true),
        # so the booleans say what the words they came from mean.
        if isinstance(value, bool):
            return "doc" if value else "off"
        if value not in ("doc", "off"):
            raise ValueError(
                "must be doc (the doc's lists of values are checked) or off "
                "(only required parameters)"
            )
        return value

    @model_validator(mode="after")
    def _one_secret_source(self) -> AppConfig:
        given = [
            name
            for name in ("secret_env", "secret_file", "secret")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of secret_env, secret_file or secret"
                + (f" (found {', '.join(given)})" if given else "")
            )
        return self

    @field_validator("upstream")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if value == SANDBOX:
            return value
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            near_miss = difflib.get_close_matches(value.strip().lower(), [SANDBOX])
            raise ValueError(
                "must be an http:// or https:// base URL, e.g. https://platform.example, "
                f"or {SANDBOX} for the embedded sandbox"
                + (f"; did you mean {SANDBOX}?" if near_miss else "")
            )
        if url.query_string or url.fragment:
            raise ValueError("must not carry a query or fragment; the gateway appends the path")
        return value.rstrip("/")


class PoolConfig(_Model):
    # Connections to the platform, all apps together; 0: no cap.
    max_connections: Annotated[int, Field(ge=0, le=100_000)] = 512
    keepalive_s: Annotated[float, Field(gt=0, le=3600)] = 30.0


class RetryOverride(_Model):
    attempts: Annotated[int, Field(ge=1, le=10)]


class RetriesConfig(_Model):
    """Safe retries: GETs on connect errors, resets and 502/503/504; a POST only when it
    could not be sent at all."""

    attempts: Annotated[int, Field(ge=1, le=10)] = 3
    backoff_s: Annotated[float, Field(gt=0, le=60)] = 0.1
    max_backoff_s: Annotated[float, Field(gt=0, le=300)] = 2.0
    # Per documented endpoint path: {attempts: N}.
    endpoints: dict[str, RetryOverride] = {}

    @field_validator("endpoints")
    @classmethod
    def _documented(cls, value: dict[str, RetryOverride]) -> dict[str, RetryOverride]:
        unknown = [path for path in value if path not in ENDPOINTS]
        if unknown:
            raise ValueError(
                f"not a documented endpoint path: {', '.join(unknown)} "
                f"(one of {', '.join(ENDPOINTS)})"
            )
        return value


class BreakerConfig(_Model):
    # Consecutive upstream failures of an app before its calls are answered 503 at once.
    failures: Annotated[int, Field(ge=1, le=10_000)] = 5
    cooldown_s: Annotated[float, Field(gt=0, le=3600)] = 30.0


class ClockConfig(_Model):
    # Beyond this offset from the platform's clock (its Date header), sign with its time.
    max_skew_s: Annotated[float, Field(ge=1, le=3600)] = 30.0


class TimeoutsConfig(_Model):
    connect_s: Annotated[float, Field(gt=0, le=300)] = 3.0
    total_s: Annotated[float, Field(gt=0, le=3600)] = 15.0


# By default one caller may hold at most this fraction (1/N) of a listener's connections.
IN_FLIGHT_SHARE = 4


def _not_a_bool(value: Any) -> Any:
    # YAML reads `yes` and `true` as booleans, which pydantic would take as 1.
    if isinstance(value, bool):
        raise ValueError("must be a whole number of requests, not true or false")
    return value


def above_connections(value: int, connections: int) -> str:
    # Each request in flight holds a connection, so such a cap would never be reached.
    return (
        f"{value} is above limits.max_connections ({connections}), so it would never be "
        f"reached; give at most {connections} (with that, this caller alone could hold "
        "every connection)"
    )


class LimitsConfig(_Model):
    """What one caller may make the gateway hold or do; SECURITY.md lists what hitting each gets."""

    max_body_bytes: Annotated[int, Field(gt=0)] = 64 * MIB
    # Form and JSON bodies, and the text parts of a multipart body together, are parsed in
    # memory on the event loop; files are spooled, so only they may be as large as the body.
    max_form_bytes: Annotated[int, Field(gt=0, le=64 * MIB)] = MIB
    max_response_bytes: Annotated[int, Field(gt=0)] = 16 * MIB
    max_params: Annotated[int, Field(gt=0, le=100_000)] = 200
    max_key_length: Annotated[int, Field(gt=0)] = 128
    max_value_length: Annotated[int, Field(gt=0)] = 65536
    max_header_bytes: Annotated[int, Field(ge=1024, le=65536)] = 16384
    header_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    body_idle_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    # A body dribbled a byte at a time dodges the idle timeout: once the gateway has waited
    # body_rate_grace_s on a body, each further second of waiting must be paid for with this
    # many bytes (0: no minimum). See gateway/http/bodies.py for why a rate, not a deadline.
    min_body_rate_bytes_per_s: Annotated[int, Field(ge=0, le=1 << 30)] = 4096
    body_rate_grace_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    keepalive_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 75.0
    max_connections: Annotated[int, Field(gt=0, le=1_000_000)] = 1024
    # Requests one caller may have in flight in this process, unless it has a max_in_flight of
    # its own; requests without a token (trusted networks, anonymous mode) count as one caller.
    # None: a share of max_connections, so that no one caller can hold every connection.
    max_in_flight_per_caller: Annotated[int, Field(ge=1, le=1_000_000)] | None = None

    @field_validator("max_in_flight_per_caller", mode="before")
    @classmethod
    def _in_flight_is_a_number(cls, value: Any) -> Any:
        return _not_a_bool(value)

    @field_validator("max_in_flight_per_caller")
    @classmethod
    def _in_flight_within_connections(cls, value: int | None, info: ValidationInfo) -> int | None:
        connections = info.data.get("max_connections")
        if value is not None and connections is not None and value > connections:
            raise ValueError(above_connections(value, connections))
        return value

    @property
    def default_max_in_flight(self) -> int:
        """max_in_flight_per_caller, or by default a quarter of max_connections."""
        if self.max_in_flight_per_caller is not None:
            return self.max_in_flight_per_caller
        return max(1, self.max_connections // IN_FLIGHT_SHARE)


MIN_CALLER_TOKEN_LENGTH = 16


class RateLimitConfig(_Model):
    """A caller's requests a second, and how many it may send at once after a quiet spell."""

    requests_per_s: Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)]
    # Default: one second's worth.
    burst: Annotated[int, Field(ge=1, le=1_000_000)] | None = None

    def rate(self) -> Rate:
        return Rate(self.requests_per_s, self.burst or max(1, math.ceil(self.requests_per_s)))


class CallerConfig(_Model):
    """A service that may call the gateway, and what it may do."""

    token_env: str | None = None
    token_file: Path | None = None
    apps: Annotated[list[str], Field(min_length=1)]
    allow: Annotated[list[str], Field(min_length=1)]
    rate_limit: RateLimitConfig | None = None
    # Requests in flight at once, in this process; None: limits.max_in_flight_per_caller.
    max_in_flight: Annotated[int, Field(ge=1, le=1_000_000)] | None = None

    @field_validator("max_in_flight", mode="before")
    @classmethod
    def _in_flight_is_a_number(cls, value: Any) -> Any:
        return _not_a_bool(value)

    @model_validator(mode="after")
    def _one_token_source(self) -> CallerConfig:
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("give exactly one of token_env or token_file")
        return self

    @field_validator("allow")
    @classmethod
    def _routes(cls, value: list[str]) -> list[str]:
        for item in value:
            Route.parse(item)
        return value


class CacheConfig(_Model):
    """The accessToken cache: memory in this process, or Redis shared by replicas."""

    backend: Literal["memory", "redis"] = "memory"
    max_entries: Annotated[int, Field(gt=0)] = 10000
    safety_margin_s: Annotated[float, Field(ge=0)] = 60.0
    url: str | None = None
    key_prefix: Annotated[str, Field(min_length=1)] = "neu:"
    timeout_s: Annotated[float, Field(gt=0, le=30)] = 0.5

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and URL(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @model_validator(mode="after")
    def _redis_needs_url(self) -> CacheConfig:
        if self.backend == "redis" and not self.url:
            raise ValueError("url: required with backend: redis (e.g. redis://127.0.0.1:6379/0)")
        return self


def without_credentials(url: str) -> str:
    """A Redis URL fit to print: no user or password, and no query (redis-py reads a
    password there too). Everything before the last `@` goes, so no password is half-kept."""
    scheme, sep, rest = url.partition("://")
    location = re.split(r"[?#]", rest.rpartition("@")[2], maxsplit=1)[0]
    return f"{scheme}{sep}{location}"


class CallbacksListenConfig(ListenConfig):
    port: Annotated[int, Field(ge=0, le=65535)] = 8081


SQLITE_STORE = "sqlite:///var/lib/neu-gateway/outbox.db"


class CallbacksConfig(_Model):
    """The listener facing the platform, and the durable outbox behind it."""

    listen: CallbacksListenConfig | None = None
    # None: Redis when the cache is Redis (so replicas share one outbox), else SQLITE_STORE.
    store: str | None = None
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 12
    backoff_s: Annotated[float, Field(gt=0)] = 1.0
    max_backoff_s: Annotated[float, Field(gt=0)] = 300.0
    timeout_s: Annotated[float, Field(gt=0)] = 10.0

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None and value != "redis" and not value.startswith("sqlite:///"):
            raise ValueError("must be sqlite:///PATH or redis (the cache's Redis)")
        return value


class SandboxListenConfig(ListenConfig):
    port: Annotated[int, Field(ge=0, le=65535)] = 8090

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if not is_loopback(value):
            raise ValueError("the sandbox listens on a loopback address only")
        return value


class SandboxConfig(_Model):
    """The embedded platform emulator, run for apps whose upstream is `sandbox`."""

    listen: SandboxListenConfig = SandboxListenConfig()
    explain: bool = True
    token_expire_s: Annotated[int, Field(gt=0)] = 604800
    # The sandbox's clock, and its Date header, this far ahead (or behind, negative).
    clock_offset_s: Annotated[float, Field(ge=-86400, le=86400)] = 0.0
    code_ttl_s: Annotated[int, Field(gt=0)] = 300
    notify_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    notify_backoff_s: Annotated[float, Field(ge=0)] = 1.0
    # Hosts besides loopback that the simulator's open-mini-app may POST a login code to.
    allowed_backend_hosts: list[str] = []

    @field_validator("allowed_backend_hosts")
    @classmethod
    def _bare_hosts(cls, value: list[str]) -> list[str]:
        hosts = [host_name(item) for item in value]
        wrong = [item for item, host in zip(value, hosts, strict=True) if host is None]
        if wrong:
            raise ValueError(
                f"{', '.join(quoted_name(item) for item in wrong)}: each must be a bare host "
                "name or IP address, e.g. backend.internal or 10.0.0.5 (no scheme, port, path "
                "or wildcard)"
            )
        return [host for host in hosts if host is not None]


# The shared backends /readyz checks; a listed one down makes it 503 (admin.ready_requires).
READY_BACKENDS = ("cache", "outbox")


class AdminConfig(_Model):
    """/healthz, /readyz and /metrics: on the main listener unless given one of their own."""

    listen: ListenConfig | None = None
    # Shared backends whose outage makes /readyz 503 too; by default only this process's own
    # state does, so one Redis down does not take every replica out of the Service at once.
    ready_requires: list[str] = []

    @field_validator("ready_requires")
    @classmethod
    def _known_backends(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in READY_BACKENDS]
        if unknown:
            raise ValueError(
                f"{', '.join(quoted_name(name) for name in unknown)}: the backends readiness "
                f"can require are {', '.join(READY_BACKENDS)}"
            )
        return list(dict.fromkeys(value))


class LoggingConfig(_Model):
    # None: JSON when stderr is not a terminal (a container, a service), text at a terminal.
    format: Literal["json", "text"] | None = None


class ShutdownConfig(_Model):
    # After SIGTERM, /readyz answers 503 while new requests are still served for drain_s, so
    # load balancers stop sending before the listener closes.
    drain_s: Annotated[float, Field(ge=0, le=600)] = 5.0
    # Requests still in flight after the drain get this long to finish.
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0


# A secret file checked more often than this is read for nothing: a rotation is a rare event.
MIN_WATCH_S = 0.1
MAX_WATCH_S = 3600.0


class SecretsConfig(_Model):
    """How the secret and token files (apps' secret_file, callers' token_file) are watched."""

    # Seconds between two readings of each file; a changed one is put in force without a
    # signal. 0: not watched (a reload still reads them).
    watch_s: Annotated[float, Field(ge=0, le=MAX_WATCH_S, allow_inf_nan=False)] = 5.0

    @field_validator("watch_s", mode="before")
    @classmethod
    def _seconds_not_a_bool(cls, value: Any) -> Any:
        # YAML reads `off` as false, which pydantic would take as 0.
        if isinstance(value, bool):
            raise ValueError("must be a number of seconds (0: not watched), not true or false")
        return value

    @field_validator("watch_s")
    @classmethod
    def _off_or_sane(cls, value: float) -> float:
        if 0 < value < MIN_WATCH_S:
            raise ValueError(f"must be 0 (not watched) or from {MIN_WATCH_S:g} to {MAX_WATCH_S:g}")
        return value


class FileConfig(_Model):
    """The shape of gateway.yaml, before secrets are read."""

    listen: ListenConfig = ListenConfig()
    apps: Annotated[dict[Annotated[str, Field(pattern=_APP_NAME)], AppConfig], Field(min_length=1)]
    default_app: str | None = None
    timeouts: TimeoutsConfig = TimeoutsConfig()
    limits: LimitsConfig = LimitsConfig()
    cache: CacheConfig = CacheConfig()
    sandbox: SandboxConfig = SandboxConfig()
    callbacks: CallbacksConfig = CallbacksConfig()
    callers: dict[Annotated[str, Field(pattern=_APP_NAME)], CallerConfig] = {}
    trusted_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    insecure_allow_anonymous: bool = False
    strict_endpoints: bool = False
    admin: AdminConfig = AdminConfig()
    logging: LoggingConfig = LoggingConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    pid_file: Path | None = None
    tls: TlsConfig = TlsConfig()
    proxy: str | None = None
    pool: PoolConfig = PoolConfig()
    retries: RetriesConfig = RetriesConfig()
    breaker: BreakerConfig = BreakerConfig()
    clock: ClockConfig = ClockConfig()
    # Processes serving the same ports (SO_REUSEPORT) under one supervisor.
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    secrets: SecretsConfig = SecretsConfig()

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        return _proxy(value)

    @field_validator("admin")
    @classmethod
    def _required_backends_exist(cls, value: AdminConfig, info: ValidationInfo) -> AdminConfig:
        # Only a backend this process opens can be required: the memory cache is the
        # process's own memory (never down), and without callbacks.listen there is no outbox.
        cache, callbacks = info.data.get("cache"), info.data.get("callbacks")
        required = value.ready_requires
        if "cache" in required and cache is not None and cache.backend != "redis":
            raise ValueError(
                "ready_requires: cache needs cache.backend: redis (the memory cache is this "
                "process's own and cannot be down)"
            )
        if "outbox" in required and callbacks is not None and callbacks.listen is None:
            raise ValueError(
                "ready_requires: outbox needs callbacks.listen (without it there is no outbox)"
            )
        return value

    @field_validator("default_app")
    @classmethod
    def _default_app_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        apps = info.data.get("apps", {})
        if value is not None and value not in apps:
            raise ValueError(f"{value!r} is not one of apps ({', '.join(apps)})")
        return value
