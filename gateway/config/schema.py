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
from gateway.core.headers import APP_NAME_PATTERN
from gateway.core.hosts import host_name
from gateway.core.ratelimit import Rate

DEFAULT_CONFIG_PATH = Path("gateway.yaml")
SANDBOX = "sandbox"
# `proxy: env`: HTTPS_PROXY / HTTP_PROXY and NO_PROXY, as curl reads them.
PROXY_FROM_ENV = "env"
# An app's `proxy: direct`: no proxy for it, whatever the top-level one.
PROXY_DIRECT = "direct"
MIB = 1 << 20
# An app's (or a caller's) name, as a key of `apps` or `callers`.
AppName = Annotated[str, Field(pattern=APP_NAME_PATTERN)]


class _Model(BaseModel):
    # Unknown keys are refused so a misspelt option is an error, not silently ignored; the
    # docstring under each field is its description in the JSON Schema (config/json_schema.py).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# Connections the kernel holds for a listener until they are accepted. aiohttp's 128 overflows
# when hundreds of callers connect at once: the kernel then drops their handshakes, and each
# dropped one costs its caller a second or more of retransmission. (The kernel caps it at
# net.core.somaxconn.)
DEFAULT_BACKLOG = 1024


class ListenConfig(_Model):
    host: str = "127.0.0.1"
    """Address to listen on. For the callers' `listen`, any but a loopback address needs
    `callers` (or `insecure_allow_anonymous: true`); `sandbox.listen` takes a loopback address
    only."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    """Port to listen on; 0 picks a free one (the log says which)."""
    backlog: Annotated[int, Field(ge=1, le=65535)] = DEFAULT_BACKLOG
    """Connections the kernel holds until the gateway accepts them. Callers who connect past it
    have their handshake dropped and retry after a second or more, so give at least the callers
    that may connect at once. With `workers`, each worker's listener has a backlog of its own,
    and the kernel hands each new connection to one of them. The kernel caps it at
    net.core.somaxconn (4096 on current kernels); `serve` warns at start of a backlog above
    that."""

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


SIGNING_SOURCES = ("signing_secret_file", "signing_secret_env", "signing_secret")
PREVIOUS_SIGNING_SOURCES = ("signing_secret_previous_file", "signing_secret_previous_env")


class AppCallbacksConfig(_Model):
    """What happens to this app's payment callbacks from the platform."""

    verify_sign: bool = True
    """Check a callback's appid, timestamp, sign and replay before asking the platform."""
    deliver_to: str | None = None
    """The internal service's http:// or https:// URL that confirmed payment callbacks are delivered
    to."""

    signing_secret_file: Path | None = None
    """File holding the secret deliveries are signed with (Standard Webhooks: `whsec_` and a
    base64 key of 24 to 64 bytes, e.g. `whsec_$(openssl rand -base64 32)`); watched, so a new
    secret written there is taken without a restart. When set, every delivery carries
    `webhook-id`, `webhook-timestamp` and `webhook-signature`. One of signing_secret_file,
    signing_secret_env or signing_secret, or none (deliveries unsigned)."""
    signing_secret_env: str | None = None
    """Environment variable holding the delivery signing secret; a running gateway keeps the
    value it started with."""
    signing_secret: str | None = None
    """The signing secret written inline: only for the sandbox's public demo one (a warning is
    logged otherwise)."""
    signing_secret_previous_file: Path | None = None
    """During a rotation, file holding the secret the service still verifies with: each
    delivery is then signed with both, so the service accepts it whichever it knows. Watched;
    remove it once every service has the new secret. Needs a signing secret."""
    signing_secret_previous_env: str | None = None
    """During a rotation, environment variable holding the previous signing secret (see
    signing_secret_previous_file)."""

    @field_validator("deliver_to")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and (
            URL(value).scheme not in ("http", "https") or not URL(value).host
        ):
            raise ValueError("must be an http:// or https:// URL of the internal service")
        return value

    @model_validator(mode="after")
    def _signing_sources(self) -> AppCallbacksConfig:
        current = [name for name in SIGNING_SOURCES if getattr(self, name) is not None]
        previous = [name for name in PREVIOUS_SIGNING_SOURCES if getattr(self, name) is not None]
        if len(current) > 1:
            raise ValueError(
                f"give one of {', '.join(SIGNING_SOURCES)}, not {' and '.join(current)}"
            )
        if len(previous) > 1:
            raise ValueError(f"give one of {' or '.join(PREVIOUS_SIGNING_SOURCES)}, not both")
        if previous and not current:
            raise ValueError(
                f"{previous[0]} is the secret being rotated away from: it needs the new one in "
                "signing_secret_file (or signing_secret_env)"
            )
        return self


class TlsConfig(_Model):
    """How the gateway trusts an https upstream, and proves itself to one that asks."""

    ca_file: Path | None = None
    """PEM file of a private CA to trust."""
    ca_mode: Literal["add", "only"] = "add"
    """`add`: trust `ca_file` besides the system's CAs; `only`: trust it alone (needs `ca_file`)."""
    client_cert: Path | None = None
    """PEM certificate for mutual TLS, e.g. over a leased line; goes with `client_key`."""
    client_key: Path | None = None
    """PEM key for mutual TLS; goes with `client_cert`."""
    server_name: str | None = None
    """The name to send in SNI and to check in the certificate, when the upstream URL names an IP
    address."""

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
    """The platform's appid of this app."""
    secret_env: str | None = None
    """Environment variable holding the app secret; a running gateway keeps the value it started
    with. One of secret_env, secret_file or secret."""
    secret_file: Path | None = None
    """File holding the app secret on one line (a Docker or Kubernetes secret); watched, so a new
    secret written there is taken without a restart. One of secret_env, secret_file or secret."""
    secret: str | None = None
    """The secret written inline: only for the public sandbox demo secret (a warning is logged
    otherwise). One of secret_env, secret_file or secret."""
    upstream: str
    """The platform's base URL, http(s)://host[:port][/prefix] without a query (the gateway appends
    /neuopenapi/...), or `sandbox` for the embedded sandbox."""
    callbacks: AppCallbacksConfig = AppCallbacksConfig()
    """What happens to this app's payment callbacks from the platform."""
    tls: TlsConfig | None = None
    """The app's own TLS settings, instead of the top-level `tls`."""
    proxy: str | None = None
    """The app's own proxy, instead of the top-level `proxy`: a URL, `env`, or `direct` (none)."""
    validation: Literal["doc", "off"] = "doc"
    """`doc`: parameters are checked against the doc's tables (types, lists of values such as
    languages, scopes and currencies, one value where the doc takes one); `off`: only that
    required parameters are there, for when the platform accepts more than the doc says.
    Unquoted, YAML reads off/no/false as false (meaning off) and on/yes/true as true (meaning
    doc); any other value is refused, naming doc and off."""

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        return _proxy(value)

    @field_validator("validation", mode="before")
    @classmethod
    def _doc_or_off(cls, value: Any) -> Any:
        # YAML 1.1 reads the docs' unquoted `validation: off` as false (and `on` as true),
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
    max_connections: Annotated[int, Field(ge=0, le=100_000)] = 512
    """Connections to the platform, in each process, in each of the two pools: the lean client's
    (direct calls), one cap per TLS setting, and aiohttp's (calls through a proxy, and uploads),
    one per TLS setting and proxy. Apps that share a TLS setting share its cap; an app that
    uploads as well as calling directly may hold up to twice this. 0: no cap. Kept until a
    restart."""
    keepalive_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """Seconds an idle connection to the platform is kept."""


class RetryOverride(_Model):
    attempts: Annotated[int, Field(ge=1, le=10)]
    """Attempts in all for a retryable call to this endpoint."""


class RetriesConfig(_Model):
    """Safe retries: GETs on connect errors, resets and 502/503/504; a POST only when it
    could not be sent at all."""

    attempts: Annotated[int, Field(ge=1, le=10)] = 3
    """Attempts in all for a call that may be retried."""
    backoff_s: Annotated[float, Field(gt=0, le=60)] = 0.1
    """The base of the pause before a retry: a random time below backoff_s x 2^(n-1), at most
    max_backoff_s (full jitter)."""
    max_backoff_s: Annotated[float, Field(gt=0, le=300)] = 2.0
    """The longest pause before a retry, in seconds."""
    endpoints: dict[str, RetryOverride] = {}
    """Attempts per documented endpoint path, e.g. /neuopenapi/pay/transactions/tradedetail:
    {attempts: 5}."""

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
    failures: Annotated[int, Field(ge=1, le=10_000)] = 5
    """Consecutive upstream failures (connect errors, timeouts, 5xx) of an app before its calls are
    answered 503 at once."""
    cooldown_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """Seconds the breaker stays open; then one probe call is let through, and a success closes it.
    """


class ClockConfig(_Model):
    max_skew_s: Annotated[float, Field(ge=1, le=3600)] = 30.0
    """Beyond this offset from the platform's clock (its Date header), timestamps are taken from the
    platform's time."""


class TimeoutsConfig(_Model):
    connect_s: Annotated[float, Field(gt=0, le=300)] = 3.0
    """Seconds to connect to the platform."""
    total_s: Annotated[float, Field(gt=0, le=3600)] = 15.0
    """Seconds for a whole upstream call, upload and answer included."""


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
    """Largest request body; more gets 413."""
    # Form and JSON bodies, and the text parts of a multipart body together, are parsed in
    # memory on the event loop; files are spooled, so only they may be as large as the body.
    max_form_bytes: Annotated[int, Field(gt=0, le=64 * MIB)] = MIB
    """Largest form or JSON body, and all text parts of a multipart body together: these are parsed
    in memory (files are spooled, and bounded by max_body_bytes only); more gets 413."""
    max_response_bytes: Annotated[int, Field(gt=0)] = 16 * MIB
    """Largest platform answer relayed; more gets 502."""
    max_params: Annotated[int, Field(gt=0, le=100_000)] = 200
    """Parameters (query, body fields and files together) in one request."""
    max_key_length: Annotated[int, Field(gt=0)] = 128
    """Characters in a parameter name."""
    max_value_length: Annotated[int, Field(gt=0)] = 65536
    """Characters in a parameter value."""
    max_header_bytes: Annotated[int, Field(ge=1024, le=65536)] = 16384
    """Bytes of request headers, and the most the request line or any one header may take; more gets
    431, counted as the bytes arrive (a whole header block may take twice this plus 1 KiB). Also
    the most a chunk-size line with its extensions may take, and half what a chunked body's
    trailers may take (more gets 400). Kept until a restart."""
    header_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    """Seconds for a request's line and headers to arrive; then 408 and the connection is closed."""
    body_idle_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    """Seconds a body may go without a byte arriving, and an answer may go unread by its client."""
    # A body dribbled a byte at a time dodges the idle timeout: once the gateway has waited
    # body_rate_grace_s on a body, each further second of waiting must be paid for with this
    # many bytes (0: no minimum). See gateway/http/bodies.py for why a rate, not a deadline.
    min_body_rate_bytes_per_s: Annotated[int, Field(ge=0, le=1 << 30)] = 4096
    """The slowest pace a body may arrive at once body_rate_grace_s has passed: each further second
    of waiting must have brought this many bytes, counted over the whole body, so a slow start
    can be made up for and a fast one buys only the time its bytes pay for. Only time spent
    waiting for the client counts. Below it, 408 body_timeout and the connection is closed.
    0: no minimum. A 100 MB upload at 1 Mbit/s arrives at 30 times the default pace."""
    body_rate_grace_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    """Seconds of waiting on a body before its pace (min_body_rate_bytes_per_s) is asked for: any
    body may take this long, and one that stalls before its bytes have paid for the wait (a
    client that sends its headers and then nothing) is cut off here, before
    body_idle_timeout_s."""
    keepalive_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 75.0
    """Seconds an idle kept-alive connection stays open."""
    max_connections: Annotated[int, Field(gt=0, le=1_000_000)] = 1024
    """Connections each listener holds at once; at the limit the one waiting longest on its client
    is closed for the new one."""
    # None: a share of max_connections, so that no one caller can hold every connection.
    max_in_flight_per_caller: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """Requests a caller without its own max_in_flight may have in flight at once, in each process;
    at most max_connections. Default: a quarter of max_connections."""

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
    """Requests a second the caller may send, in each gateway process or in all of them
    (`scope`)."""
    burst: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """How many requests it may send at once after a quiet spell. Default: one second's worth.
    A shared limit counts in windows of whole seconds: a window of ceil(burst / requests_per_s)
    s takes floor(requests_per_s * window) requests, so at once at least `burst` and fewer than
    burst + requests_per_s go, and never more than requests_per_s a second over a window (2.5
    with a burst of 1: 2 in each second)."""
    scope: Literal["process", "shared"] = "process"
    """`process`: a token bucket in each gateway process, so N workers or replicas let N times
    the rate through; `shared`: counted once for all of them, in the cache's Redis (needs
    cache.backend redis), as a sliding window (see `burst`; a burst at a window's end and
    another at the next one's start may pass within one window). While that Redis does not
    answer within cache.timeout_s, a shared limit is counted in each process again, asked of
    Redis once a second, and neu_gateway_rate_limit_fallbacks_total says so."""

    def rate(self) -> Rate:
        burst = self.burst or max(1, math.ceil(self.requests_per_s))
        return Rate(self.requests_per_s, burst, shared=self.scope == "shared")


class CallerConfig(_Model):
    """A service that may call the gateway, and what it may do."""

    token_env: str | None = None
    """Environment variable holding the caller's bearer token (16 characters or more); kept until a
    restart. One of token_env or token_file."""
    token_file: Path | None = None
    """File holding the caller's bearer token (16 characters or more, one token per caller).
    Watched as a secret_file is (secrets.watch_s): a new token written there, in place or by a
    rename or a symlink flip, is taken without a restart; an empty or unreadable file, or one
    with a token too short or another caller's, is refused with a warning and the token in force
    kept. One of token_env or token_file."""
    apps: Annotated[list[str], Field(min_length=1)]
    """The apps (names under `apps`) the caller may use."""
    allow: Annotated[list[str], Field(min_length=1)]
    """Routes the caller may call: `METHOD /neuopenapi/path`, METHOD one of GET, POST or *, and * as
    a wildcard in the path."""
    rate_limit: RateLimitConfig | None = None
    """Requests a second the caller may send (in each process, or shared by all: `scope`); none:
    no limit."""
    max_in_flight: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """Requests the caller may have in flight at once, in each process; at most
    limits.max_connections. Default: limits.max_in_flight_per_caller."""

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


# host:port or [IPv6]:port, the port 1 to 65535; the JSON Schema's pattern too, so that an
# editor and check-config agree. No user, password, query or path: read as a URL, they would
# be dropped, and the gateway would start with another node than the file names.
HOST_PORT_PATTERN = (
    r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]@?#%]+):"
    r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
)


def host_port(value: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port`) as a pair; ValueError saying what is wrong."""
    matched = re.fullmatch(HOST_PORT_PATTERN.removeprefix("^").removesuffix("$"), value)
    host = matched.group(1) if matched else ""
    if host.startswith("["):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            host = ""
    if matched is None or not host:
        raise ValueError(f"{value!r} is not host:port (e.g. 10.0.0.7:26379)")
    return host, int(matched.group(2))


HostPort = Annotated[str, Field(max_length=300)]


class RedisAuthConfig(_Model):
    """How the gateway logs in to Redis nodes it finds itself (Sentinel, Cluster) and whether
    it talks TLS to them."""

    username: str | None = None
    """ACL user name (Redis 6 and later); none: the default user."""
    password_env: str | None = None
    """Environment variable holding the Redis password (`requirepass`, or the ACL user's)."""
    password_file: Path | None = None
    """File holding the Redis password, read at start: a new one takes a restart, as every cache
    setting does."""
    tls: bool = False
    """Talk TLS to the nodes (as `rediss://` does for `url`)."""
    ca_file: Path | None = None
    """With tls: PEM file of the CA that signed the nodes' certificates; none: the system's."""

    @model_validator(mode="after")
    def _one_password_source(self) -> RedisAuthConfig:
        if self.password_env is not None and self.password_file is not None:
            raise ValueError("give at most one of password_env or password_file")
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file needs tls: true")
        return self

    @field_validator("nodes", check_fields=False)
    @classmethod
    def _nodes(cls, value: list[str]) -> list[str]:
        for node in value:
            host_port(node)
        if len(set(value)) != len(value):
            raise ValueError("a node is listed twice")
        return value


class RedisSentinelConfig(RedisAuthConfig):
    """Redis behind Sentinel: the gateway asks the sentinels where the master is, and asks
    again when they fail it over."""

    master: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s]+$")]
    """The name the sentinels monitor the master under (`sentinel monitor NAME ...`)."""
    nodes: Annotated[list[HostPort], Field(min_length=1, max_length=64)]
    """The sentinels, as host:port (26379 is Sentinel's usual port); three or more in
    production, so that they can agree on a failover."""
    sentinel_password_env: str | None = None
    """Environment variable holding the sentinels' own password, when they ask for one
    (`requirepass` in sentinel.conf); none: they are asked without one."""
    sentinel_password_file: Path | None = None
    """File holding the sentinels' own password."""

    @model_validator(mode="after")
    def _one_sentinel_password_source(self) -> RedisSentinelConfig:
        if self.sentinel_password_env is not None and self.sentinel_password_file is not None:
            raise ValueError("give at most one of sentinel_password_env or sentinel_password_file")
        return self


class RedisClusterConfig(RedisAuthConfig):
    """A Redis Cluster: the gateway learns the slots' owners from these nodes and follows
    the cluster when a primary fails over."""

    nodes: Annotated[list[HostPort], Field(min_length=1, max_length=1000)]
    """Some of the cluster's nodes, as host:port (any will do to start; two or more, so a start
    does not depend on one node)."""


class CacheConfig(_Model):
    """The accessToken cache: memory in this process, or Redis shared by replicas."""

    backend: Literal["memory", "redis"] = "memory"
    """Where accessTokens are cached: `memory` (this process) or `redis` (shared by replicas;
    needs exactly one of `url`, `sentinel` or `cluster`)."""
    max_entries: Annotated[int, Field(gt=0)] = 10000
    """Logins the in-memory store keeps (least recently used dropped beyond)."""
    safety_margin_s: Annotated[float, Field(ge=0)] = 60.0
    """Served tokens have at least this many seconds of life left."""
    url: str | None = None
    """With backend redis, one Redis: redis://[:password@]host:port/db, rediss://... (TLS) or
    unix://...; ${VAR} keeps the password out of the file."""
    sentinel: RedisSentinelConfig | None = None
    """With backend redis, Redis behind Sentinel (automatic failover)."""
    cluster: RedisClusterConfig | None = None
    """With backend redis, a Redis Cluster."""
    key_prefix: Annotated[str, Field(min_length=1, max_length=100)] = "neu:"
    """Every Redis key starts with it (no `{` or `}`: they would choose a Cluster's slots)."""
    timeout_s: Annotated[float, Field(gt=0, le=30)] = 0.5
    """Seconds a Redis call may take before the cache carries on without it (a write that waits
    for the replicas: wait_timeout_s more)."""
    wait_replicas: Annotated[int, Field(ge=0, le=16)] | None = None
    """Replicas that must have a write before the gateway counts on it (Redis's WAIT): an
    accepted callback before the platform is answered 200, an exchange's lock, a delivery's
    lease and its end. Fewer within wait_timeout_s: the callback is refused 503 (the platform
    retries). Default: 1 with `sentinel` or `cluster` (a failover then loses nothing
    acknowledged), 0 with `url`."""
    wait_timeout_s: Annotated[float, Field(gt=0, le=10)] = 0.5
    """Seconds a write waits for wait_replicas replicas to have it."""

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and URL(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("key_prefix")
    @classmethod
    def _no_hash_tag(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError(
                "must not hold { or }: on a Redis Cluster they would decide where keys live"
            )
        return value

    @model_validator(mode="after")
    def _one_redis(self) -> CacheConfig:
        given = [name for name in REDIS_FORMS if getattr(self, name) is not None]
        if self.backend == "redis" and len(given) != 1:
            raise ValueError(
                "backend redis needs exactly one of url, sentinel or cluster"
                + (
                    f" (given: {', '.join(given)})"
                    if given
                    else " (e.g. url: redis://127.0.0.1:6379/0)"
                )
            )
        found_away = [name for name in given if name != "url"]
        if self.backend != "redis" and found_away:
            raise ValueError(f"{found_away[0]}: needs backend: redis")
        return self

    @property
    def redis_form(self) -> str | None:
        """Which Redis the backend is (url, sentinel or cluster); None: the memory cache."""
        if self.backend != "redis":
            return None
        return next((name for name in REDIS_FORMS if getattr(self, name) is not None), None)

    @property
    def replicas_to_wait_for(self) -> int:
        if self.wait_replicas is not None:
            return self.wait_replicas
        return 0 if self.redis_form in (None, "url") else 1


REDIS_FORMS = ("url", "sentinel", "cluster")


def without_credentials(url: str) -> str:
    """A URL fit to print: no user or password, and no query (redis-py reads a password
    there, and a service's URL may carry a token). Everything before the last `@` goes, so no
    password is half-kept."""
    scheme, sep, rest = url.partition("://")
    location = re.split(r"[?#]", rest.rpartition("@")[2], maxsplit=1)[0]
    return f"{scheme}{sep}{location}"


class CallbacksListenConfig(ListenConfig):
    port: Annotated[int, Field(ge=0, le=65535)] = 8081
    """Port of the listener facing the platform; 0 picks a free one."""


SQLITE_STORE = "sqlite:///var/lib/neu-gateway/outbox.db"


class CallbacksConfig(_Model):
    """The listener facing the platform, and the durable outbox behind it."""

    listen: CallbacksListenConfig | None = None
    """The listener facing the platform; payment callbacks are off unless it is set."""
    # None: decided at load, from cache.backend, so that replicas on Redis share one outbox.
    store: str | None = None
    """The outbox: sqlite:///ABSOLUTE/PATH, or `redis` (the cache's Redis). Default: redis when
    cache.backend is redis, else sqlite:///var/lib/neu-gateway/outbox.db."""
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 12
    """Delivery attempts before a callback is parked as dead."""
    backoff_s: Annotated[float, Field(gt=0)] = 1.0
    """Seconds before the first retry of a delivery, doubling up to max_backoff_s, with jitter."""
    max_backoff_s: Annotated[float, Field(gt=0)] = 300.0
    """The longest pause between two delivery attempts, in seconds."""
    timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """Seconds one delivery attempt may take."""

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None and value != "redis" and not value.startswith("sqlite:///"):
            raise ValueError("must be sqlite:///PATH or redis (the cache's Redis)")
        return value


class SandboxListenConfig(ListenConfig):
    port: Annotated[int, Field(ge=0, le=65535)] = 8090
    """Port of the embedded sandbox; 0 picks a free one."""

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if not is_loopback(value):
            raise ValueError("the sandbox listens on a loopback address only")
        return value


class SandboxConfig(_Model):
    """The embedded platform emulator, run for apps whose upstream is `sandbox`."""

    listen: SandboxListenConfig = SandboxListenConfig()
    """The embedded sandbox's listener, on a loopback address only."""
    explain: bool = True
    """A sign error says what the sandbox signed (secret masked)."""
    token_expire_s: Annotated[int, Field(gt=0)] = 604800
    """Life of an accessToken the sandbox hands out, in seconds."""
    clock_offset_s: Annotated[float, Field(ge=-86400, le=86400)] = 0.0
    """The sandbox's clock, and its Date header, this many seconds ahead (or behind, negative)."""
    code_ttl_s: Annotated[int, Field(gt=0)] = 300
    """Life of a login code, in seconds."""
    notify_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    """Payment callback attempts in all."""
    notify_backoff_s: Annotated[float, Field(ge=0)] = 1.0
    """Seconds before the second callback attempt, doubling after."""
    allowed_backend_hosts: list[str] = []
    """Host names or IP addresses (bare: no scheme, port, path or wildcard) besides loopback that
    the simulator's Open mini app may POST a login code to (its backend_url). Any other host is
    refused, so nothing that reaches the sandbox can make it send requests elsewhere."""

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
    """/healthz, /readyz, /metrics, /openapi.json and /docs: on the main listener unless given one
    of their own."""

    listen: ListenConfig | None = None
    """A listener of its own for /healthz, /readyz, /metrics, /openapi.json and /docs (then not on
    `listen`); it asks no caller token."""
    # By default only this process's own state counts, so one Redis down does not take every
    # replica out of the Service at once.
    ready_requires: list[str] = []
    """Shared backends whose outage makes /readyz 503 too: `cache` (needs cache.backend redis),
    `outbox` (needs callbacks.listen). By default they are only reported."""

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
    format: Literal["json", "text"] | None = None
    """`json` (one object a line) or `text`. Default: json, or text when stderr is a terminal."""


class ShutdownConfig(_Model):
    drain_s: Annotated[float, Field(ge=0, le=600)] = 5.0
    """After SIGTERM, seconds /readyz answers 503 while requests are still served, so load balancers
    stop sending before the listener closes."""
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """Then, seconds requests in flight get to finish before they are cut off."""


# A secret file checked more often than this is read for nothing: a rotation is a rare event.
MIN_WATCH_S = 0.1
MAX_WATCH_S = 3600.0


class SecretsConfig(_Model):
    """How the secret and token files (apps' secret_file, callers' token_file) are watched."""

    watch_s: Annotated[float, Field(ge=0, le=MAX_WATCH_S, allow_inf_nan=False)] = 5.0
    """Seconds between two readings of every secret_file and token_file: one whose content changed
    (written in place, or swapped by a rename or a symlink flip, as Kubernetes updates a mounted
    Secret) is put in force without a signal; an empty or unreadable one is refused with a
    warning, the value in force kept. 0: not watched (a reload still reads them); else 0.1 to
    3600. Kept until a restart."""

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
    """Where internal services reach the gateway."""
    apps: Annotated[dict[AppName, AppConfig], Field(min_length=1)]
    """The mini apps the gateway signs for, by name: the name (letters, digits, _.-) is what
    X-Neu-App and callers' `apps` use."""
    default_app: str | None = None
    """The app of a request without X-Neu-App. Default: the only app, when there is one."""
    timeouts: TimeoutsConfig = TimeoutsConfig()
    """Timeouts of calls to the platform."""
    limits: LimitsConfig = LimitsConfig()
    """What one caller may make the gateway hold or do."""
    cache: CacheConfig = CacheConfig()
    """The accessToken cache."""
    sandbox: SandboxConfig = SandboxConfig()
    """The embedded platform emulator, run for apps whose upstream is `sandbox`."""
    callbacks: CallbacksConfig = CallbacksConfig()
    """The listener for the platform's payment callbacks, and the outbox behind it."""
    callers: dict[AppName, CallerConfig] = {}
    """The services that may call the gateway, each with its own bearer token; none: no token is
    asked for."""
    trusted_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    """CIDR networks whose requests need no token, e.g. 127.0.0.1/32."""
    insecure_allow_anonymous: bool = False
    """Allow a non-loopback listener with no callers (only behind something that authenticates
    them); logs an INSECURE warning at start."""
    strict_endpoints: bool = False
    """Refuse (404) /neuopenapi/ paths that are not in the platform doc."""
    admin: AdminConfig = AdminConfig()
    """/healthz, /readyz, /metrics, /openapi.json and /docs."""
    logging: LoggingConfig = LoggingConfig()
    """The logs' format."""
    shutdown: ShutdownConfig = ShutdownConfig()
    """How SIGTERM drains the gateway."""
    pid_file: Path | None = None
    """`serve` writes its process id here (and removes it on exit), for `neu-gateway reload`."""
    tls: TlsConfig = TlsConfig()
    """How the gateway trusts an https upstream, and proves itself to one that asks."""
    proxy: str | None = None
    """A forward proxy to the platform: http://[user:password@]host:port, or `env` (HTTPS_PROXY,
    HTTP_PROXY and NO_PROXY as curl reads them)."""
    pool: PoolConfig = PoolConfig()
    """The connection pool to the platform."""
    retries: RetriesConfig = RetriesConfig()
    """Safe retries of upstream calls."""
    breaker: BreakerConfig = BreakerConfig()
    """The circuit breaker of each app's upstream."""
    clock: ClockConfig = ClockConfig()
    """Correction of the gateway's clock against the platform's."""
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    """Processes serving the same ports (SO_REUSEPORT) under one supervisor; more than 1 needs
    cache.backend redis."""
    secrets: SecretsConfig = SecretsConfig()
    """How the secret and token files are watched."""

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
