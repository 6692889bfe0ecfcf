"""JSON Web Tokens (RFC 7519): HS512 as the platform issues its accessTokens. Pure.

The sandbox signs and verifies them; the gateway only reads the claims of the platform's
tokens (`unverified_claims`): it has no key, and the platform is the one that checks them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

HEADER = {"typ": "JWT", "alg": "HS512"}


class TokenError(ValueError):
    """The token is not one this key signed."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: dict[str, Any], key: bytes) -> str:
    head = _b64(json.dumps(HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha512).digest()
    return f"{head}.{body}.{_b64(signature)}"


def decode(token: str, key: bytes) -> dict[str, Any]:
    """The claims of a token this key signed; TokenError for anything else."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("not a JWT (three dot-separated parts)")
    head, body, signature = parts
    expected = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha512).digest()
    try:
        given = _unb64(signature)
        header = json.loads(_unb64(head))
        claims = json.loads(_unb64(body))
    # RecursionError: json recurses once a level of nesting, and a token is anyone's text.
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise TokenError("not a JWT (bad base64url or JSON)") from None
    if not hmac.compare_digest(given, expected) or header != HEADER:
        raise TokenError("signature does not verify")
    if not isinstance(claims, dict):
        raise TokenError("claims are not an object")
    return claims


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT without checking its signature, or None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None
