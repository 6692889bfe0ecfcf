"""The config in force in this process, and what a reload may change of it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.config.model import Config

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
    # The watch of the secret files is started with the process, at its interval.
    "secrets.watch_s",
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


def kept_from_the_start(config: Config) -> list[str]:
    """What a reload cannot renew, one line for each secret or token read from an environment
    variable: a process sees the environment it was started with, whatever the shell that
    asks for the reload has set since."""
    return [
        f"{source.key}: a running gateway keeps the value {source.env} had when it started "
        f"(a reload cannot see a changed environment); to rotate this {source.what}, use "
        f"{source.what}_file, which is watched and taken without a restart, or restart the gateway"
        for source in config.credential_sources
        if source.env is not None
    ]
