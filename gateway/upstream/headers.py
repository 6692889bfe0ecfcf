"""Which of the platform's answer headers reach the caller."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.core.headers import NOT_IN_A_HEADER_VALUE
from gateway.core.params import is_unicode

# RFC 9110 section 7.6.1: these describe one connection, not the message, so never relay them.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# The body is relayed decoded and re-framed, so its old length and coding no longer apply.
REFRAMED = frozenset({"content-length", "content-encoding"})
_NOT_RELAYED = HOP_BY_HOP | REFRAMED
# The gateway's own headers: a caller sees only those the gateway set, never the platform's.
OWN_PREFIX = "x-neu-"


def end_to_end_headers(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The headers worth relaying: no hop-by-hop ones, none named in Connection, none of the
    gateway's own (X-Neu-*)."""
    dropped = _NOT_RELAYED
    connection = headers.getall("Connection", None)
    if connection:
        named = {token.strip().lower() for value in connection for token in value.split(",")}
        if not named <= dropped:
            dropped = dropped | named
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in dropped or lowered.startswith(OWN_PREFIX):
            continue
        # A value whose bytes are not UTF-8 could not be written to the caller again.
        if (name.isascii() and value.isascii()) or (is_unicode(name) and is_unicode(value)):
            kept.add(name, value)
    return kept


def has_control_character(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> bool:
    """Whether a header value holds a character RFC 9110 forbids there (a tab aside)."""
    return any(NOT_IN_A_HEADER_VALUE.search(value) for value in headers.values())
