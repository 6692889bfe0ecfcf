"""How the emulated platform behaves: lifetimes of codes and tokens, callback retries, its
clock, and what the simulator page may reach."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    token_expire_s: int = 604800
    code_ttl_s: int = 300
    notify_attempts: int = 5
    notify_backoff_s: float = 1.0
    explain: bool = True
    # The platform's clock (and its Date header) this far ahead of the host's, or behind.
    clock_offset_s: float = 0.0
    # Hosts besides loopback that the simulator's open-mini-app may POST a login code to, as
    # core.hosts.host_name spells them.
    allowed_backend_hosts: frozenset[str] = frozenset()
