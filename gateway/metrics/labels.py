"""Label values a caller cannot grow: a documented endpoint path or `other`, a name or `none`."""

from __future__ import annotations

from gateway.core.endpoints import ENDPOINTS

OTHER = "other"
NONE = "none"


def route_label(path: str) -> str:
    """A documented endpoint path, or `other` for any path a caller made up."""
    return path if path in ENDPOINTS else OTHER
