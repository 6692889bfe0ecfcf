"""gateway.yaml into a frozen, validated Config; secrets resolved from env vars or files.

Every problem is reported as `dotted.field.path: reason`, all at once, and never with a
secret's value. `${VAR}` (or `${VAR:-default}`) in any string value is replaced from the
environment before validation.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from yarl import URL

from gateway import logs
from gateway.core.access import Caller, Network, Route
from gateway.core.endpoints import ENDPOINTS
from gateway.core.errors import quoted_name
from gateway.core.hosts import host_name
from gateway.core.ratelimit import Rate
from gateway.core.secrets import Secret

log = logs.logger("neu_gateway.config")

DEFAULT_CONFIG_PATH = Path("gateway.yaml")
SANDBOX = "sandbox"
# `proxy: env`: HTTPS_PROXY / HTTP_PROXY and NO_PROXY, as curl reads them.
PROXY_FROM_ENV = "env"
# An app's `proxy: direct`: no proxy for it, whatever the top-level one.
PROXY_DIRECT = "direct"
MIB = 1 << 20

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_APP_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ConfigError(Exception):
    """gateway.yaml cannot be used; `problems` are `field: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


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


def _resolved_proxy(value: str | None) -> str | None:
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


def _above_connections(value: int, connections: int) -> str:
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
    # many bytes (0: no minimum). See gateway/egress/bodies.py for why a rate, not a deadline.
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
            raise ValueError(_above_connections(value, connections))
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


class AdminConfig(_Model):
    """/healthz, /readyz and /metrics: on the main listener unless given one of their own."""

    listen: ListenConfig | None = None


class LoggingConfig(_Model):
    # None: JSON when stderr is not a terminal (a container, a service), text at a terminal.
    format: Literal["json", "text"] | None = None


class ShutdownConfig(_Model):
    # After SIGTERM, /readyz answers 503 while new requests are still served for drain_s, so
    # load balancers stop sending before the listener closes.
    drain_s: Annotated[float, Field(ge=0, le=600)] = 5.0
    # Requests still in flight after the drain get this long to finish.
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0


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

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        return _proxy(value)

    @field_validator("default_app")
    @classmethod
    def _default_app_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        apps = info.data.get("apps", {})
        if value is not None and value not in apps:
            raise ValueError(f"{value!r} is not one of apps ({', '.join(apps)})")
        return value


@dataclass(frozen=True)
class App:
    """One configured mini app, its secret read and ready."""

    name: str
    appid: str
    secret: Secret
    upstream: str  # a base URL, or SANDBOX for the embedded sandbox
    callbacks: AppCallbacksConfig = field(default_factory=AppCallbacksConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    proxy: str | None = None
    validation: str = "doc"

    @property
    def uses_sandbox(self) -> bool:
        return self.upstream == SANDBOX


@dataclass(frozen=True)
class Placement:
    """A worker's share of a gateway run by `workers: N`: its number, and the sandbox the
    supervisor runs for all of them (None without one)."""

    index: int
    sandbox_url: str | None


@dataclass(frozen=True)
class Config:
    listen: ListenConfig
    apps: Mapping[str, App]
    default_app: str | None
    timeouts: TimeoutsConfig
    limits: LimitsConfig
    cache: CacheConfig = field(default_factory=CacheConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    callers: Mapping[str, Caller] = field(default_factory=dict)
    trusted_networks: tuple[Network, ...] = ()
    insecure_allow_anonymous: bool = False
    strict_endpoints: bool = False
    admin: AdminConfig = field(default_factory=AdminConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    pid_file: Path | None = None
    pool: PoolConfig = field(default_factory=PoolConfig)
    retries: RetriesConfig = field(default_factory=RetriesConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    workers: int = 1
    # Set in a worker process: where the supervisor put it (see gateway/supervisor.py).
    placement: Placement | None = None

    def credentials(self) -> list[str]:
        """Every secret value the config holds: app secrets and caller tokens, for redaction."""
        proxies = {
            URL(entry.proxy)
            for entry in self.apps.values()
            if entry.proxy not in (None, PROXY_FROM_ENV)
        }
        return (
            [entry.secret.reveal() for entry in self.apps.values()]
            + [caller.token.reveal() for caller in self.callers.values()]
            + [proxy.password for proxy in proxies if proxy.password]
        )

    @property
    def sandbox_apps(self) -> list[App]:
        return [app for app in self.apps.values() if app.uses_sandbox]


class DuplicateKey(yaml.YAMLError):
    """A mapping in gateway.yaml names the same key twice."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml's SafeLoader, refusing a key given twice in one mapping, at any depth.

    YAML requires keys to be unique, yet PyYAML keeps the last of two silently: a second
    `apps:` block would drop every app of the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_lines: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges, and may be overridden on purpose
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = first_lines.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader itself refuses it
            if first is not None:
                raise DuplicateKey(
                    f"line {line}: key {key!r} is given twice in one mapping (first at line "
                    f"{first}); YAML would keep only the last, so merge them into one"
                )
            first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


def load(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, substitute, validate and resolve gateway.yaml, or raise ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        # Never the exception itself: it quotes the file's bytes, secrets and all.
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    try:
        document = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except DuplicateKey as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError([f"{path}: not valid YAML{at}"]) from None
    return from_mapping(document, os.environ if environ is None else environ)


def from_mapping(document: Any, environ: Mapping[str, str]) -> Config:
    if not isinstance(document, dict):
        raise ConfigError(["(top level): must be a mapping with at least `apps`"])
    problems: list[str] = []
    document = _substitute(document, environ, "", problems)
    if problems:
        raise ConfigError(problems)
    try:
        parsed = FileConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError([_describe(error) for error in exc.errors()]) from None
    apps = {}
    for name, app in parsed.apps.items():
        secret = read_credential(
            f"apps.{name}", "secret", app.secret_env, app.secret_file, app.secret, environ, problems
        )
        if secret is not None:
            apps[name] = App(
                name,
                app.appid,
                secret,
                app.upstream,
                app.callbacks,
                app.tls or parsed.tls,
                _resolved_proxy(app.proxy or parsed.proxy),
                app.validation,
            )
    default_app = parsed.default_app or (next(iter(parsed.apps)) if len(parsed.apps) == 1 else None)
    callers = _callers(parsed, environ, problems)
    if not parsed.listen.is_loopback and not parsed.callers and not parsed.insecure_allow_anonymous:
        problems.append(
            f"listen.host: {parsed.listen.host} is not a loopback address and no callers are "
            "configured, so anyone who reaches it could act as your apps; configure callers, "
            "listen on 127.0.0.1, or set insecure_allow_anonymous: true if something in front "
            "of the gateway authenticates callers"
        )
    callbacks = parsed.callbacks
    if callbacks.store is None:
        store = "redis" if parsed.cache.backend == "redis" else SQLITE_STORE
        callbacks = callbacks.model_copy(update={"store": store})
    if callbacks.store == "redis" and parsed.cache.backend != "redis":
        problems.append("callbacks.store: redis needs cache.backend: redis (its url is used)")
    if problems:
        raise ConfigError(problems)
    return Config(
        parsed.listen,
        apps,
        default_app,
        parsed.timeouts,
        parsed.limits,
        parsed.cache,
        parsed.sandbox,
        callbacks,
        callers,
        tuple(parsed.trusted_networks),
        parsed.insecure_allow_anonymous,
        parsed.strict_endpoints,
        parsed.admin,
        parsed.logging,
        parsed.shutdown,
        parsed.pid_file,
        parsed.pool,
        parsed.retries,
        parsed.breaker,
        parsed.clock,
        parsed.workers,
    )


def _callers(
    parsed: FileConfig, environ: Mapping[str, str], problems: list[str]
) -> dict[str, Caller]:
    callers: dict[str, Caller] = {}
    for name, caller in parsed.callers.items():
        where = f"callers.{name}"
        unknown = [app for app in caller.apps if app not in parsed.apps]
        if unknown:
            problems.append(
                f"{where}.apps: unknown app {', '.join(map(repr, unknown))} "
                f"(configured: {', '.join(parsed.apps)})"
            )
        connections = parsed.limits.max_connections
        if caller.max_in_flight is not None and caller.max_in_flight > connections:
            problems.append(
                f"{where}.max_in_flight: {_above_connections(caller.max_in_flight, connections)}"
            )
        token = read_credential(
            where, "token", caller.token_env, caller.token_file, None, environ, problems
        )
        if token is None:
            continue
        if len(token.reveal()) < MIN_CALLER_TOKEN_LENGTH:
            source = "token_env" if caller.token_env else "token_file"
            problems.append(
                f"{where}.{source}: the token is shorter than {MIN_CALLER_TOKEN_LENGTH} "
                "characters; use a long random one (e.g. openssl rand -hex 32)"
            )
            continue
        twin = next((c.name for c in callers.values() if c.token.matches(token.reveal())), None)
        if twin is not None:
            problems.append(f"{where}: has the same token as callers.{twin}; give each its own")
            continue
        routes = tuple(Route.parse(item) for item in caller.allow)
        rate = None if caller.rate_limit is None else caller.rate_limit.rate()
        callers[name] = Caller(
            name, token, frozenset(caller.apps), routes, rate, caller.max_in_flight
        )
    return callers


def _substitute(node: Any, environ: Mapping[str, str], where: str, problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {
            key: _substitute(value, environ, f"{where}.{key}" if where else str(key), problems)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            _substitute(item, environ, f"{where}[{index}]", problems)
            for index, item in enumerate(node)
        ]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(f"{where}: environment variable {name} is not set")
        return ""

    return _ENV_REFERENCE.sub(replace, node)


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown option (check the spelling against the README's config reference)"
    elif error["type"] == "missing":
        message = "required"
    elif isinstance(error.get("input"), bool):
        # Only a bool field takes a boolean, and it never fails on one: this value was a word
        # YAML 1.1 turns into one (`format: off`), so say so, or the message puzzles.
        message += (
            " (YAML reads an unquoted yes, no, on, off, true or false as the boolean "
            f"{str(error['input']).lower()}; put the value in quotes)"
        )
    return f"{location}: {message}"


def read_credential(
    where: str,
    what: str,
    env_name: str | None,
    file_path: Path | None,
    inline: str | None,
    environ: Mapping[str, str],
    problems: list[str],
) -> Secret | None:
    """A secret or token from an environment variable, a file, or (demo only) inline."""
    if env_name is not None:
        value = environ.get(env_name)
        if value is None:
            problems.append(f"{where}.{what}_env: environment variable {env_name} is not set")
            return None
        if not value:
            problems.append(f"{where}.{what}_env: environment variable {env_name} is empty")
            return None
        return Secret(value)
    if file_path is not None:
        try:
            value = file_path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            problems.append(f"{where}.{what}_file: cannot read {file_path} ({reason})")
            return None
        if not value:
            problems.append(f"{where}.{what}_file: {file_path} is empty")
            return None
        return Secret(value)
    assert inline is not None
    if not inline:
        problems.append(f"{where}.{what}: is empty")
        return None
    log.warning(
        "%s.%s: the secret is written in the config file; outside the sandbox demo use "
        "%s_env or %s_file",
        where,
        what,
        what,
        what,
    )
    return Secret(inline)


# What is bound when the process starts (listeners, the cache and outbox connections, the
# upstream session's timeouts, the connection guard): a reload cannot change it, and says so.
_RESTART_ONLY = (
    "listen",
    "admin",
    "sandbox",
    "cache",
    "timeouts",
    "logging",
    "pid_file",
    "callbacks.listen",
    "callbacks.store",
    "callbacks.max_attempts",
    "callbacks.backoff_s",
    "callbacks.max_backoff_s",
    "callbacks.timeout_s",
    "limits.max_header_bytes",
    "limits.header_timeout_s",
    "limits.body_idle_timeout_s",
    "limits.keepalive_timeout_s",
    "limits.max_connections",
    "limits.max_response_bytes",
    "shutdown.timeout_s",
    "pool",
    "retries",
    "breaker",
    "clock",
    "workers",
)


def _value_at(config: Config, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


class LiveConfig:
    """The config in force. A reload swaps it whole; each request reads it once, when it
    arrives, so a request in flight keeps the config it started with."""

    def __init__(self, config: Config, loaded_at: float) -> None:
        self.current = config
        self.loaded_at = loaded_at

    def swap(self, new: Config, loaded_at: float) -> list[str]:
        """Puts `new` in force, but for what only a restart can change: those keys keep
        their running values and are returned, so the caller can name them."""
        old = self.current
        unchanged = [key for key in _RESTART_ONLY if _value_at(old, key) != _value_at(new, key)]
        sections: dict[str, dict[str, Any]] = {}
        for key in unchanged:
            section, _, field_name = key.partition(".")
            if field_name:
                sections.setdefault(section, {})[field_name] = _value_at(old, key)
        top = {key: getattr(old, key) for key in unchanged if "." not in key}
        nested = {
            section: getattr(new, section).model_copy(update=values)
            for section, values in sections.items()
        }
        self.current = replace(new, **top, **nested)
        self.loaded_at = loaded_at
        return unchanged

    def apps_with_new_secrets(self, before: Config) -> list[App]:
        """The apps whose secret differs from `before`'s."""
        return [
            app
            for name, app in self.current.apps.items()
            if name in before.apps and not app.secret.matches(before.apps[name].secret.reveal())
        ]
