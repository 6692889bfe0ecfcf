"""Host names as the listeners and the sandbox judge them: loopback or not, and one spelling of
each. Pure."""

from __future__ import annotations

import ipaddress
import re

# A DNS name's characters (letters, digits, dots, hyphens): what a bare host in a config or
# a Host header may hold, before it is judged.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1), with or without IPv6 brackets.
    Names that merely resolve to one are not: what they resolve to can change."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str | None:
    """`value` as one bare host: a DNS name in lower case, or an IP address in its short form
    (IPv6 without brackets), as urllib's `hostname` gives them; None if it is neither (a
    scheme, a port, a path, a user or a wildcard in it)."""
    text = value.strip().lower()
    try:
        return ipaddress.ip_address(text.removeprefix("[").removesuffix("]")).compressed
    except ValueError:
        pass
    return text if _NAME.fullmatch(text) and ".." not in text else None
