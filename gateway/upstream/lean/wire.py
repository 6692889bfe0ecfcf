"""What the lean client writes and undoes: a request's head, an answer's Content-Encoding."""

from __future__ import annotations

import zlib

from multidict import CIMultiDict
from yarl import URL

from gateway.core.errors import UpstreamBadResponse
from gateway.upstream.framing import too_large
from gateway.upstream.transport import Answer

# What the gateway can decode; the platform answers plain JSON, compressed or not.
ACCEPT_ENCODING = "gzip, deflate"
USER_AGENT = "neu-gateway"


def request_head(
    method: str, url: URL, host_header: str, headers: CIMultiDict[str], body: bytes | None
) -> bytes:
    """The request line and headers, in one buffer."""
    lines = [f"{method} {url.raw_path_qs} HTTP/1.1\r\nHost: {host_header}\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"a line break in the header {name!r}")
        lines.append(f"{name}: {value}\r\n")
    if "User-Agent" not in headers:
        lines.append(f"User-Agent: {USER_AGENT}\r\n")
    lines.append(f"Accept-Encoding: {ACCEPT_ENCODING}\r\n")
    if body is not None or method == "POST":
        lines.append(f"Content-Length: {len(body or b'')}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


def decoded(answer: Answer, max_body_bytes: int) -> Answer:
    """The answer's body without its Content-Encoding, never more than max_body_bytes."""
    coding = answer.headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity") or not answer.body:
        return answer
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise UpstreamBadResponse(
            f"the platform answered in an encoding the gateway cannot read ({coding})"
        )
    try:
        body = _inflated(answer.body, max_body_bytes, GZIP_OR_ZLIB, coding)
    except zlib.error:
        if coding != "deflate":
            raise UpstreamBadResponse(
                f"the platform's {coding} answer could not be decoded"
            ) from None
        # Not the zlib format RFC 9110 names: raw deflate, as some servers send.
        try:
            body = _inflated(answer.body, max_body_bytes, RAW_DEFLATE, coding)
        except zlib.error:
            raise UpstreamBadResponse(
                f"the platform's {coding} answer could not be decoded"
            ) from None
    return Answer(answer.status, answer.headers, body)


GZIP_OR_ZLIB = 47  # zlib's wbits: a gzip or zlib header, whichever it is
RAW_DEFLATE = -15
_GZIP_MAGIC = b"\x1f\x8b"


def _inflated(data: bytes, max_body_bytes: int, wbits: int, coding: str) -> bytes:
    """Every member of a gzip body (RFC 1952 section 2.2), or the one zlib or deflate
    stream; refused when one ends early or other bytes follow. zlib.error for a stream that
    is not of this kind from its first byte."""
    parts: list[bytes] = []
    size = 0
    first = True
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(data, max_body_bytes - size + 1)
        except zlib.error:
            if first:
                raise
            raise UpstreamBadResponse(
                f"the platform's {coding} answer could not be decoded"
            ) from None
        first = False
        size += len(part)
        if size > max_body_bytes or inflater.unconsumed_tail:
            raise UpstreamBadResponse(too_large(max_body_bytes))
        parts.append(part)
        if not inflater.eof:
            raise UpstreamBadResponse(f"the platform's {coding} answer ends before its end")
        data = inflater.unused_data
        if not data:
            return b"".join(parts)
        if wbits == RAW_DEFLATE or not data.startswith(_GZIP_MAGIC):
            raise UpstreamBadResponse(f"the platform's {coding} answer has bytes after its end")
