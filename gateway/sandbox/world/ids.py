"""The platform's identifiers derived from a user and an app, stable across restarts: a
user's openId (one per app) and unionId (one across apps), and the merchant and payer
numbers a trade shows."""

from __future__ import annotations

import hashlib


def digest(*parts: str) -> str:
    """32 hex characters standing for these parts, the same every time."""
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


def open_id(appid: str, user: str) -> str:
    """Stable for one user in one app, different in another app, as on the platform."""
    return digest("openId", appid, user)


def union_id(user: str) -> str:
    """The same for one user across every app."""
    return digest("unionId", user)
