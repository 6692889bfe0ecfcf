"""Standard Webhooks signatures on the deliveries the gateway makes to the apps' services.

The convention (standardwebhooks.com, "Standard Webhooks" specification, "Verifying webhook
authenticity"): three headers,

    webhook-id: <the message's id, the same on every attempt>
    webhook-timestamp: <the attempt's time, whole seconds since the Unix epoch>
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>"> [v1,<...> ...]

keyed by a secret written `whsec_<base64 of the key>`. During a rotation the sender signs with
each secret, space-separated, so a receiver that knows either accepts the message. Verifying
libraries refuse a timestamp more than five minutes from their own clock, which is what makes
a recorded delivery useless to replay later.

Pure: the secret's text in, the headers out; no clock (the caller gives the time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SECRET_PREFIX = "whsec_"  # noqa: S105 - the secrets' prefix, not a secret
# The specification's recommended key length: shorter is weak, and 64 is what it allows.
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
VERSION = "v1"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
# The three a signed message carries, each once.
SIGNED_HEADERS = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
# What receivers allow between the timestamp and their clock (the libraries' fixed tolerance).
TOLERANCE_S = 300


class SigningSecretError(ValueError):
    """A signing secret that cannot be used; the message says why, never the value."""


@dataclass(frozen=True)
class SigningKey:
    """A signing secret's key bytes, masked when printed."""

    key: bytes

    def __repr__(self) -> str:
        return "SigningKey('**********')"

    __str__ = __repr__


def signing_key(text: str) -> SigningKey:
    """The key of a `whsec_...` secret (raises SigningSecretError)."""
    if text.startswith("\ufeff"):
        # Invisible where the file is looked at, so "must start with" would puzzle.
        raise SigningSecretError(
            "starts with a byte order mark (U+FEFF) before the secret; save the file as "
            "UTF-8 without one"
        )
    if not text.startswith(SECRET_PREFIX):
        raise SigningSecretError(
            f"must start with {SECRET_PREFIX} (a Standard Webhooks secret: {SECRET_PREFIX} "
            "and the key in base64, e.g. whsec_$(openssl rand -base64 32))"
        )
    encoded = text[len(SECRET_PREFIX) :]
    try:
        # Strict: a stray character would otherwise be skipped, and the key be another one
        # than the receiver decodes.
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SigningSecretError(
            f"the part after {SECRET_PREFIX} is not base64 (A-Z, a-z, 0-9, + and /, = padding)"
        ) from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise SigningSecretError(
            f"its key is {len(key)} bytes; Standard Webhooks keys are {MIN_KEY_BYTES} to "
            f"{MAX_KEY_BYTES} bytes (openssl rand -base64 32 gives 32)"
        )
    return SigningKey(key)


def signature(key: SigningKey, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of the body as sent."""
    # A header's bytes that are not UTF-8 come as surrogates; sign the bytes that were sent.
    signed = f"{message_id}.{timestamp}.".encode("utf-8", "surrogateescape") + body
    digest = hmac.new(key.key, signed, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode('ascii')}"


def signed_headers(
    keys: Sequence[SigningKey], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three headers for one attempt, a signature with each key (none without keys)."""
    if not keys:
        return {}
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(signature(key, message_id, timestamp, body) for key in keys),
    }


@dataclass(frozen=True)
class Verdict:
    """What a check of a received message found: which key signed it (its index among the
    keys given, None if none did), and why it would be refused ("" if it would not)."""

    signed_by: int | None
    problem: str
    timestamp: int | None = None

    @property
    def accepted(self) -> bool:
        return not self.problem


def verify(
    keys: Sequence[SigningKey],
    headers: Mapping[str, str],
    body: bytes,
    now_s: float,
    tolerance_s: float | None = TOLERANCE_S,
) -> Verdict:
    """Checks a message as a receiver does: the headers there, a signature by one of `keys`
    over the exact body, and (unless tolerance_s is None) a timestamp within tolerance_s of
    now_s. `headers` is looked up case-insensitively."""
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id, stamp, signatures = (lowered.get(name, "") for name in SIGNED_HEADERS)
    missing = [name for name in SIGNED_HEADERS if not lowered.get(name)]
    if missing:
        return Verdict(None, f"no {', '.join(missing)} header")
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        return Verdict(None, f"{TIMESTAMP_HEADER} is not whole seconds since the epoch")
    timestamp = int(stamp)
    presented = [
        candidate.encode("utf-8", "surrogateescape") for candidate in signatures.split(" ")
    ]
    # One HMAC per key, however many candidates the header holds: each costs a pass over
    # the body, and a header line can hold thousands.
    expected = (signature(key, message_id, timestamp, body).encode() for key in keys)
    signed_by = next(
        (
            index
            for index, mine in enumerate(expected)
            if any(hmac.compare_digest(mine, candidate) for candidate in presented)
        ),
        None,
    )
    if signed_by is None:
        return Verdict(
            None,
            "no signature matches: another secret signed it, or the id, timestamp or body changed",
            timestamp,
        )
    if tolerance_s is not None and abs(now_s - timestamp) > tolerance_s:
        when = "old" if timestamp < now_s else "far ahead"
        return Verdict(
            signed_by,
            f"the timestamp is {abs(now_s - timestamp):.0f} s {when}, beyond the "
            f"{tolerance_s:.0f} s a receiver allows",
            timestamp,
        )
    return Verdict(signed_by, "", timestamp)
