"""The OpenAPI calls the sandbox received, for the simulator page. Pure.

Bounded (the newest MAX_ENTRIES), and safe to show: `sign` and any parameter named `secret`
are masked, and so is every app secret wherever it appears in a value. A sign rejection keeps
what the platform signed, the secret masked, as `explain` shows it, with the signed pairs in
order so a page can find where a caller's own canonical string first differs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.core import signing

MAX_ENTRIES = 200
MAX_ENDPOINT_CHARS = 200
MAX_PARAMS = 100
MAX_VALUE_CHARS = 4096
MASK = signing.SECRET_MASK
# How check_signed_request's message for a wrong sign begins, and where `explain` adds what
# the platform signed (with the values as sent, so the log puts its masked string there).
SIGN_ERROR = "sign error"
EXPLAINED = "; the platform signed: "


def scrub(text: str, secrets: Iterable[str]) -> str:
    """The text with every secret in it masked, the longest first."""
    for secret in sorted({secret for secret in secrets if secret}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def masked_params(params: Mapping[str, str], secrets: Iterable[str]) -> dict[str, str]:
    """The params with `sign`, any `secret` (in any case) and every app secret masked."""
    known = list(secrets)
    masked: dict[str, str] = {}
    for key, value in params.items():
        if key == "sign" or key.strip().casefold() == signing.SECRET_KEY:
            masked[scrub(key, known)] = MASK
        else:
            masked[scrub(key, known)] = scrub(value, known)
    return masked


def signed_pairs(params: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """What the platform signs, as (key, value) in signing order; the secret's value is None."""
    keys = [key for key in params if key not in signing.UNSIGNED_KEYS | {signing.SECRET_KEY}]
    keys.append(signing.SECRET_KEY)
    return [
        (key, None if key == signing.SECRET_KEY else params[key])
        for key in sorted(keys, key=signing.java_string_order)
    ]


def masked_canonical(pairs: Iterable[tuple[str, str | None]]) -> str:
    """The canonical string of signed_pairs() with the secret masked."""
    return "".join(f"{key}={MASK if value is None else value}" for key, value in pairs)


class RequestLog:
    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._last_id = 0

    def record(
        self,
        *,
        at: int,
        method: str,
        endpoint: str,
        params: Mapping[str, str],
        status: int,
        msg: str,
        secrets: Iterable[str],
        verdict: str | None = None,
    ) -> dict[str, Any]:
        """Logs one call; `verdict` is "accepted" (status 200) or "refused" unless given."""
        self._last_id += 1
        secrets = list(secrets)
        masked = masked_params(params, secrets)
        too_long = len(masked) > MAX_PARAMS or any(
            len(key) + len(value) > MAX_VALUE_CHARS for key, value in masked.items()
        )
        entry: dict[str, Any] = {
            "id": self._last_id,
            "at": at,
            "method": method,
            "endpoint": endpoint[:MAX_ENDPOINT_CHARS],
            "verdict": verdict or ("accepted" if status == 200 else "refused"),
            "status": status,
            "msg": scrub(msg.split(EXPLAINED)[0], secrets),
            "params": _shortened(masked),
            "truncated": too_long,
            "canonical": None,
            "signedPairs": None,
        }
        if msg.startswith(SIGN_ERROR) and not too_long:
            pairs = signed_pairs(masked)
            entry["canonical"] = masked_canonical(pairs)
            entry["signedPairs"] = [list(pair) for pair in pairs]
            if EXPLAINED in msg:
                entry["msg"] += EXPLAINED + entry["canonical"]
        self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Newest first."""
        return list(reversed(self._entries))


def _shortened(params: dict[str, str]) -> dict[str, str]:
    shown = list(params.items())[:MAX_PARAMS]
    return {
        key[:MAX_VALUE_CHARS]: value
        if len(value) <= MAX_VALUE_CHARS
        else value[:MAX_VALUE_CHARS] + "…"
        for key, value in shown
    }
