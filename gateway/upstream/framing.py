"""What an answer's head must say for the gateway to relay it, checked alike by both
transports: a real status, a length it can trust, a transfer coding it can undo."""

from __future__ import annotations

from gateway.core.errors import UpstreamBadResponse


def is_chunked(transfer_encoding: str) -> bool:
    """Whether an answer's Transfer-Encoding says chunked; UpstreamBadResponse for any other
    coding (gzip, or chunked twice), which would reach the caller still applied."""
    if transfer_encoding == "chunked":
        return True  # as nearly every server writes it, without the parse
    codings = [
        coding
        for coding in (token.strip().lower() for token in transfer_encoding.split(","))
        # identity: no coding at all (RFC 2616 named it; RFC 9112 no longer does).
        if coding and coding != "identity"
    ]
    if not codings:
        return False
    if codings == ["chunked"]:
        return True
    raise UpstreamBadResponse(
        "the platform's answer has a transfer coding the gateway cannot decode "
        f"(Transfer-Encoding: {transfer_encoding[:64]})"
    )


def bad_status(status: int) -> str:
    return f"the platform answered HTTP {status}, which is not an HTTP status (100 to 599)"


def too_large(limit: int) -> str:
    return f"the platform's response is larger than limits.max_response_bytes ({limit})"
