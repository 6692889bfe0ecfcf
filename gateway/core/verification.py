"""How a signed request is checked on arrival: appid, timestamp, sign. Pure.

The sandbox checks requests this way, as the platform does; the gateway checks the platform's
payment callbacks the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.core import signing

MAX_SKEW_MS = 5 * 60 * 1000


class Rejected(Exception):
    """The platform refuses the request; `status` goes into responseHeader.status."""

    def __init__(self, status: int, msg: str) -> None:
        self.status = status
        self.msg = msg
        super().__init__(msg)


def check_signed_request(
    params: Mapping[str, str], secrets: Mapping[str, str], now_ms: int, explain: bool
) -> str:
    """The request's appid if it is signed right and on time; Rejected otherwise."""
    if "secret" in params:
        raise Rejected(400, "a 'secret' parameter was sent: the app secret must never travel")
    appid = params.get("appid", "")
    if not appid:
        raise Rejected(400, "appid is required")
    secret = secrets.get(appid)
    if secret is None:
        raise Rejected(401, f"unknown appid {appid[:64]!r}")
    timestamp = params.get("timestamp", "")
    if not timestamp:
        raise Rejected(400, "timestamp is required (milliseconds since the Unix epoch)")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 19:
        raise Rejected(400, "timestamp must be a whole number of milliseconds")
    skew_s = (int(timestamp) - now_ms) / 1000
    if abs(skew_s) * 1000 > MAX_SKEW_MS:
        raise Rejected(
            401,
            f"timestamp expired or invalid: it is {abs(skew_s):.0f} s "
            f"{'ahead of' if skew_s > 0 else 'behind'} the platform's clock; it must be within "
            "300 s (milliseconds, not seconds)",
        )
    if not params.get("sign"):
        raise Rejected(401, "sign is required")
    if not signing.verify(params, secret):
        msg = "sign error: the sign does not match the parameters"
        if explain:
            msg += "; the platform signed: " + signing.canonical_string(params, signing.SECRET_MASK)
        raise Rejected(401, msg)
    return appid
