"""The config in resolved form: apps with their secrets read, callers with their tokens.

Built by load.from_mapping, by keyword; frozen, so a reload swaps it whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from yarl import URL

from gateway.config.schema import (
    PROXY_FROM_ENV,
    SANDBOX,
    AdminConfig,
    AppCallbacksConfig,
    BreakerConfig,
    CacheConfig,
    CallbacksConfig,
    ClockConfig,
    LimitsConfig,
    ListenConfig,
    LoggingConfig,
    PoolConfig,
    RetriesConfig,
    SandboxConfig,
    SecretsConfig,
    ShutdownConfig,
    TimeoutsConfig,
    TlsConfig,
    host_port,
    without_credentials,
)
from gateway.core.access import Caller, Network
from gateway.core.secrets import Secret
from gateway.core.webhooks import SECRET_PREFIX


@dataclass(frozen=True, kw_only=True)
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
    # The secrets deliveries are signed with (callbacks.signing_secret*), the current one
    # first, then the one a rotation moves away from; none: deliveries go unsigned.
    signing_secrets: tuple[Secret, ...] = ()

    @property
    def uses_sandbox(self) -> bool:
        return self.upstream == SANDBOX


@dataclass(frozen=True, kw_only=True)
class RedisTarget:
    """The Redis the gateway shares with its replicas, passwords read: one server (`url`),
    a master behind Sentinel, or a Cluster (cache.url, cache.sentinel, cache.cluster)."""

    form: str  # url, sentinel or cluster
    url: str | None = None
    nodes: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    username: str | None = None
    password: Secret | None = None
    sentinel_password: Secret | None = None
    tls: bool = False
    ca_file: Path | None = None
    prefix: str = "neu:"
    timeout_s: float = 0.5
    # Redis's WAIT: replicas that must have a write before it is counted on.
    wait_replicas: int = 0
    wait_timeout_s: float = 0.5

    @classmethod
    def of_url(cls, url: str, prefix: str = "neu:", timeout_s: float = 0.5) -> RedisTarget:
        return cls(form="url", url=url, prefix=prefix, timeout_s=timeout_s)

    @property
    def where(self) -> str:
        """Which Redis, fit to print: no password."""
        if self.url is not None:
            return f"redis at {without_credentials(self.url)}"
        nodes = ",".join(f"{host}:{port}" for host, port in self.nodes)
        if self.form == "sentinel":
            return f"redis master {self.master} behind sentinels {nodes}"
        return f"redis cluster at {nodes}"

    def secrets(self) -> list[str]:
        found = [self.password, self.sentinel_password]
        if self.url is not None:
            url = URL(self.url)
            found += [Secret(url.password)] if url.password else []
            found += [Secret(v) for k, v in url.query.items() if "password" in k.lower() and v]
        return [secret.reveal() for secret in found if secret is not None]


def redis_nodes(nodes: list[str]) -> tuple[tuple[str, int], ...]:
    return tuple(host_port(node) for node in nodes)


@dataclass(frozen=True, kw_only=True)
class CredentialSource:
    """Where an app's secret or a caller's token is read from: an environment variable, a
    file, or (neither) the config itself."""

    owner: str  # apps.<name> or callers.<name>
    what: str  # secret or token
    env: str | None = None
    file: Path | None = None

    @property
    def key(self) -> str:
        """The config key it is given by, e.g. apps.demo.secret_file."""
        suffix = "_env" if self.env is not None else "_file" if self.file is not None else ""
        return f"{self.owner}.{self.what}{suffix}"

    @property
    def name(self) -> str:
        return self.owner.partition(".")[2]

    @property
    def of_an_app(self) -> bool:
        return self.owner.startswith("apps.")


@dataclass(frozen=True, kw_only=True)
class Placement:
    """A worker's share of a gateway run by `workers: N`: its number, and the sandbox the
    supervisor runs for all of them (None without one)."""

    index: int
    sandbox_url: str | None


@dataclass(frozen=True, kw_only=True)
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
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    # The Redis of cache.backend redis (None: the memory cache).
    redis: RedisTarget | None = None
    # Where each app's secret and each caller's token came from, in the file's order.
    credential_sources: tuple[CredentialSource, ...] = ()
    # Set in a worker process: where the supervisor put it (see gateway/runtime/workers.py).
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
            + [
                # With and without its prefix: the key alone is as secret as the whole.
                text
                for entry in self.apps.values()
                for signing in entry.signing_secrets
                for text in (signing.reveal(), signing.reveal().removeprefix(SECRET_PREFIX))
            ]
            + [caller.token.reveal() for caller in self.callers.values()]
            + [proxy.password for proxy in proxies if proxy.password]
            + [
                # A service's URL may carry a password for it (https://user:pw@orders/...).
                password
                for entry in self.apps.values()
                if entry.callbacks.deliver_to
                and (password := URL(entry.callbacks.deliver_to).password)
            ]
            + (self.redis.secrets() if self.redis is not None else [])
        )

    @property
    def sandbox_apps(self) -> list[App]:
        return [app for app in self.apps.values() if app.uses_sandbox]
