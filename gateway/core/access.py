"""Who may call the gateway, and what each caller may do. Pure.

A caller presents `Authorization: Bearer <token>`. Requests from a trusted network need no
token (a sidecar on loopback). With no callers configured at all, every request is anonymous
and allowed, which the config permits only on a loopback listener (or when told it is
protected by something in front).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from gateway.core.platform import API_PREFIX
from gateway.core.ratelimit import Rate
from gateway.core.secrets import Secret

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
METHODS = ("GET", "POST", "*")


@dataclass(frozen=True)
class Route:
    """`METHOD /neuopenapi/path` where `*` in the path matches anything, `/` included."""

    method: str
    pattern: str
    # The pattern compiled once: fnmatch looks its compiled form up on every call.
    _match: Callable[[str], re.Match[str] | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_match", re.compile(fnmatch.translate(self.pattern)).match)

    @classmethod
    def parse(cls, text: str) -> Route:
        method, _, pattern = text.strip().partition(" ")
        method, pattern = method.upper(), pattern.strip()
        if method not in METHODS or not pattern.startswith(API_PREFIX):
            raise ValueError(
                f"{text!r} is not 'METHOD /neuopenapi/...' (METHOD one of GET, POST, *)"
            )
        return cls(method, pattern)

    def allows(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self._match(path) is not None

    def __str__(self) -> str:
        return f"{self.method} {self.pattern}"


@dataclass(frozen=True)
class Caller:
    name: str
    token: Secret
    apps: frozenset[str]
    routes: tuple[Route, ...]
    # Its requests a second and burst (in each gateway process, or shared by all); None: no
    # limit.
    rate: Rate | None = None
    # Its requests in flight at once, in each gateway process; None: limits' default.
    max_in_flight: int | None = None

    def may_use(self, app: str) -> bool:
        return app in self.apps

    def may_call(self, method: str, path: str) -> bool:
        for route in self.routes:  # noqa: SIM110 - any() of a generator costs twice as much
            if route.allows(method, path):
                return True
        return False


# Stands for a request that needs no token: anonymous mode, or a trusted network.
TRUSTED = "trusted"
ANONYMOUS = "anonymous"


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def identify(callers: Iterable[Caller], presented: str) -> Caller | None:
    """The caller whose token this is. Every token is compared, so timing tells nothing."""
    found = None
    for caller in callers:
        if caller.token.matches(presented):
            found = caller
    return found


def is_trusted(remote: str | None, networks: Iterable[Network]) -> bool:
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in network for network in networks)


def caller_for(
    callers: Mapping[str, Caller],
    trusted_networks: Iterable[Network],
    authorization: str | None,
    remote: str | None,
) -> Caller | str | None:
    """The Caller, TRUSTED or ANONYMOUS (no rights check), or None (not authenticated)."""
    if not callers:
        return ANONYMOUS
    if authorization is not None:
        # A credential that is sent must be right, whatever its scheme: a wrong or
        # malformed one is refused even from a trusted network.
        presented = bearer_token(authorization)
        return identify(callers.values(), presented) if presented is not None else None
    if is_trusted(remote, trusted_networks):
        return TRUSTED
    return None
