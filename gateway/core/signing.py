"""The platform's signing rule, as pure functions: no clock, no config, no I/O.

The rule is the `sign()` method of the platform doc's Java client:
every parameter the platform receives plus `secret`, minus `sign` and `fileData`, keys in Java
`String` order, `key=value` concatenated with no separator, lowercase hex SHA-256 of the UTF-8
bytes. The caller supplies `appid` and `timestamp` among the params; this module never reads
the time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

Scalar = str | int | bool | None
ParamValue = Scalar | Sequence[Scalar]

# The file part of a multipart upload: forwarded byte for byte, never signed.
FILE_FIELD = "fileData"
UNSIGNED_KEYS = frozenset({"sign", FILE_FIELD})
SECRET_KEY = "secret"  # noqa: S105 - the parameter name, not a value
SECRET_MASK = "******"  # noqa: S105 - what is shown instead of a secret


def java_string_order(key: str) -> bytes:
    """Sort key matching Java's `String.compareTo`: UTF-16 code units, not code points.

    Big-endian UTF-16 bytes compare in the same order as the code units they encode, so a
    character above U+FFFF (a surrogate pair, 0xD800..) sorts before one in U+E000..U+FFFF,
    which is where Python's own `sorted()` would disagree with the platform.
    """
    return key.encode("utf-16-be", "surrogatepass")


def value_text(value: ParamValue) -> str:
    """A value as Java's `transToStr` renders it: null empty, lists joined with commas."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return ",".join(value_text(item) for item in value)


def canonical_string(params: Mapping[str, ParamValue], secret: str) -> str:
    """The exact string the platform hashes. Pass SECRET_MASK as `secret` to show it safely."""
    signed = {key: value for key, value in params.items() if key not in UNSIGNED_KEYS}
    # A caller's own `secret` entry must never stand in for the real one.
    signed[SECRET_KEY] = secret
    # ASCII keys (nearly always) sort the same by code point as by UTF-16 code unit.
    order = sorted(signed) if "".join(signed).isascii() else sorted(signed, key=java_string_order)
    return "".join(
        [
            f"{key}={value if isinstance(value, str) else value_text(value)}"
            for key in order
            for value in (signed[key],)
        ]
    )


def sign(params: Mapping[str, ParamValue], secret: str) -> str:
    """The `sign` parameter for these params under this app secret."""
    # Java's getBytes(UTF_8) turns an unpaired surrogate into '?'; "replace" does the same.
    data = canonical_string(params, secret).encode("utf-8", "replace")
    return hashlib.sha256(data).hexdigest()


def verify(params: Mapping[str, ParamValue], secret: str) -> bool:
    """Whether `params["sign"]` is the right sign for the other params, in constant time."""
    given = params.get("sign")
    if not isinstance(given, str):
        return False
    expected = sign(params, secret)
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))
