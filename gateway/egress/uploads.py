"""multipart/form-data from a caller: text fields become params, the fileData part is spooled.

A file part is never held whole in memory: it is read in chunks into a spool that stays in
memory while small and moves to an anonymous temporary file beyond SPOOL_MEMORY_BYTES (for all
of a request's files together), then is streamed to the upstream from there. Its bytes are
never decoded or changed.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import BodyPartReader, MultipartReader, hdrs, payload, web
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import (
    BadContentDispositionHeader,
    BadContentDispositionParam,
    parse_content_disposition,
)
from aiohttp.streams import StreamReader

from gateway import logs
from gateway.core.errors import InvalidMultipart, SecretParamRejected, quoted_name
from gateway.core.params import Pairs, is_secret_name, is_unicode, too_many_params
from gateway.core.signing import FILE_FIELD
from gateway.core.sizes import READ_CHUNK_BYTES
from gateway.http.bodies import IDENTITY, BodyClock, BodyTimes, codings, too_large

SPOOL_MEMORY_BYTES = 256 * 1024
CONTENT_TRANSFER_ENCODING = "Content-Transfer-Encoding"
PLAIN_TRANSFER_ENCODINGS = frozenset({"", "7bit", "8bit", "binary"})
UTF8_NAMES = frozenset({"utf-8", "utf8"})
DEFAULT_FILE_TYPE = "application/octet-stream"
# aiohttp warns of a Content-Disposition it cannot parse, quoting it. Warnings shown once per
# distinct text are remembered forever, so each attacker-chosen header would stay in memory;
# the part is refused for having no name anyway.
warnings.filterwarnings("ignore", category=BadContentDispositionHeader)
warnings.filterwarnings("ignore", category=BadContentDispositionParam)
# RFC 2046 allows text before the first boundary; no form client sends more than a line.
MAX_PREAMBLE_BYTES = 1024
# A form part has a Content-Disposition and perhaps a Content-Type; room for a few more.
MAX_PART_HEADERS = 16
MAX_PART_HEADER_BYTES = 8190


@dataclass
class FilePart:
    """One uploaded file, forwarded byte for byte and never signed.

    Its bytes stay in memory up to `memory_limit`, then move to an unlinked temporary file,
    so a crash leaves nothing behind on disk.
    """

    name: str
    filename: str | None
    content_type: str
    memory_limit: int
    spool: tempfile.SpooledTemporaryFile[bytes] = field(init=False)
    size: int = 0

    def __post_init__(self) -> None:
        self.spool = tempfile.SpooledTemporaryFile(max_size=self.memory_limit)  # noqa: SIM115 - closed by Upload.close()
        if self.memory_limit == 0:
            # max_size=0 would mean "never roll over": with no memory left, start on disk.
            self.spool.rollover()

    @property
    def memory_bytes(self) -> int:
        # SpooledTemporaryFile moves to disk as soon as it grows past max_size.
        return self.size if self.size <= self.memory_limit else 0

    def write(self, chunk: bytes) -> None:
        # Chunk-sized writes land in the page cache; an executor hop per chunk costs more.
        self.spool.write(chunk)
        self.size += len(chunk)

    def payload(self) -> payload.Payload:
        """A payload that streams the spooled bytes from the start."""
        self.spool.seek(0)
        if self.memory_bytes:
            # Still in memory: the file payload would ask for fileno(), which rolls it to disk.
            return payload.BytesPayload(self.spool.read(), content_type=self.content_type)
        return payload.IOBasePayload(self.spool, content_type=self.content_type, filename=None)


@dataclass
class Upload:
    """A parsed multipart body: text pairs in order, and the spooled file parts."""

    pairs: Pairs = field(default_factory=list)
    files: list[FilePart] = field(default_factory=list)

    def close(self) -> None:
        for part in self.files:
            part.spool.close()


@dataclass(frozen=True)
class MultipartLimits:
    max_body_bytes: int
    max_text_bytes: int  # all text parts together (limits.max_form_bytes)
    max_parts: int  # what is left of limits.max_params after the query string
    times: BodyTimes


async def read_multipart(request: web.Request, limits: MultipartLimits) -> Upload:
    """Read the caller's multipart body; the caller must close() the result.

    The part named `fileData` is the file (the one field the platform's sign leaves out);
    every other part is a parameter, and is refused if it claims to be a file, so the platform
    never receives a field the gateway did not sign.
    """
    upload = Upload()
    # One clock for the whole body: its pace is the body's, however many parts it has.
    clock = BodyClock(request, limits.times)
    try:
        reader = await _reader(request, clock)
        text_budget = limits.max_text_bytes
        while True:
            part = await clock.step(reader.next())
            if part is None:
                break
            if len(upload.pairs) + len(upload.files) >= limits.max_parts:
                raise too_many_params(limits.max_parts)
            if isinstance(part, MultipartReader):
                raise InvalidMultipart("nested multipart parts are not supported")
            text_budget -= await _read_part(part, upload, request, limits, clock, text_budget)
    except (
        HttpProcessingError,
        ValueError,
        RuntimeError,
        AssertionError,
        LookupError,
        # aiohttp warns of a Content-Disposition it cannot parse (and then finds no name);
        # where warnings are errors, that warning is the error.
        Warning,
    ) as exc:
        upload.close()
        raise InvalidMultipart(
            f"the multipart/form-data body is malformed ({_reason(exc)})"
        ) from exc
    except BaseException:
        upload.close()
        raise
    return upload


class _AfterPreamble:
    """The body's stream, handing the first boundary line back once it has been found.

    aiohttp's reader looks for the first boundary line by line, with no bound on the lines
    before it: megabytes of empty lines kept the event loop busy for seconds.
    """

    def __init__(self, content: StreamReader, first_boundary: bytes) -> None:
        self._content = content
        self._first_boundary: bytes | None = first_boundary

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        if self._first_boundary is not None:
            line, self._first_boundary = self._first_boundary, None
            return line
        return await self._content.readline(max_line_length=max_line_length)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._content, name)


async def _reader(request: web.Request, clock: BodyClock) -> MultipartReader:
    boundary = parse_mimetype(request.headers[hdrs.CONTENT_TYPE]).parameters.get("boundary")
    if not boundary:
        raise InvalidMultipart("the multipart/form-data Content-Type has no boundary")
    delimiter = b"--" + boundary.encode("utf-8", "surrogateescape")
    preamble = 0
    while True:
        line = await clock.step(request.content.readline(max_line_length=MAX_PREAMBLE_BYTES))
        if line.rstrip() in (delimiter, delimiter + b"--"):
            break
        preamble += len(line)
        if not line or preamble > MAX_PREAMBLE_BYTES:
            raise InvalidMultipart(
                "the multipart/form-data body does not start with its boundary "
                f"(at most {MAX_PREAMBLE_BYTES} bytes may come before it)"
            )
    return MultipartReader(
        request.headers,
        cast(StreamReader, _AfterPreamble(request.content, line)),
        max_field_size=MAX_PART_HEADER_BYTES,
        max_headers=MAX_PART_HEADERS,
    )


def _reason(exc: Exception) -> str:
    # aiohttp's messages can quote body bytes; keep the kind of failure, not the content.
    if isinstance(exc, HttpProcessingError | Warning):
        return type(exc).__name__
    text = str(exc).split(":")[0].split("b'")[0].strip()
    # Redacted before it is cut: a credential cut first no longer has the shape redaction finds.
    return logs.clipped("".join(ch for ch in text if ch.isprintable()), 80) or type(exc).__name__


# A quoted parameter value starting with a slash, or holding a backslash anywhere.
_ALTERED_QUOTED_VALUE = re.compile(r'=\s*"[\\/]|=\s*"[^"]*\\')


def _altered() -> InvalidMultipart:
    return InvalidMultipart(
        "a multipart part's name or filename holds a backslash or starts with a slash: "
        'send them as browsers do (a " as %22)'
    )


def _checked_part(part: BodyPartReader) -> str:
    """The part's name, once its headers are ones the gateway can forward faithfully."""
    raw = part.headers.get(hdrs.CONTENT_DISPOSITION)
    disposition, _ = parse_content_disposition(raw)
    if raw is not None and _ALTERED_QUOTED_VALUE.search(raw):
        # aiohttp's parser unescapes backslashes and drops a quoted value's leading slashes:
        # such a name would reach the platform, and be signed, as another one.
        raise _altered()
    if disposition != "form-data":
        # RFC 7578 section 4.2: every part of a form is `Content-Disposition: form-data`.
        raise InvalidMultipart("each multipart part needs Content-Disposition: form-data")
    name = part.name
    if not name:
        raise InvalidMultipart("a multipart part has no name in its Content-Disposition")
    for what, text in (("name", name), ("filename", part.filename)):
        if text is not None and not is_unicode(text):
            raise InvalidMultipart(f"a multipart part's {what} is not valid UTF-8")
        if text is not None and (text.startswith("/") or "\\" in text):
            # Spelled name*= or filename*= (RFC 5987), they pass the check above decoded; the
            # gateway writes them quoted, which the receiver's parser alters the same way.
            raise _altered()
    if not all(is_unicode(value) for value in part.headers.values()):
        # They would be written again when the part is forwarded (its Content-Type).
        raise InvalidMultipart(f"part {quoted_name(name)} has a header that is not valid UTF-8")
    if not codings(part.headers.getall(CONTENT_TRANSFER_ENCODING, [])) <= PLAIN_TRANSFER_ENCODINGS:
        # RFC 7578 section 4.7: senders must not use it over HTTP, and it would be forwarded
        # (and signed) still encoded.
        raise InvalidMultipart(
            f"part {quoted_name(name)} has a Content-Transfer-Encoding; send its bytes as they are"
        )
    if not codings(part.headers.getall(hdrs.CONTENT_ENCODING, [])) <= IDENTITY:
        raise InvalidMultipart(f"part {quoted_name(name)} is compressed; send it uncompressed")
    if is_secret_name(name):
        raise SecretParamRejected()
    return name


async def _read_part(
    part: BodyPartReader,
    upload: Upload,
    request: web.Request,
    limits: MultipartLimits,
    clock: BodyClock,
    text_budget: int,
) -> int:
    """Reads one part into the upload; returns the text bytes it used."""
    name = _checked_part(part)
    if name == FILE_FIELD:
        # One memory budget for all of a request's files: many small parts must not add up
        # to many times SPOOL_MEMORY_BYTES.
        memory_left = SPOOL_MEMORY_BYTES - sum(f.memory_bytes for f in upload.files)
        file = FilePart(
            name,
            part.filename,
            part.headers.get("Content-Type", DEFAULT_FILE_TYPE),
            max(0, memory_left),
        )
        upload.files.append(file)
        while chunk := await clock.step(part.read_chunk(READ_CHUNK_BYTES)):
            _check_body_size(request, limits.max_body_bytes)
            file.write(chunk)
        return 0
    if part.filename is not None:
        raise InvalidMultipart(
            f"part {quoted_name(name)} carries a filename, but only {FILE_FIELD!r} is sent as a "
            f"file (the platform signs every other field): send {quoted_name(name)} as a plain "
            "text field, or the file as fileData"
        )
    charset = part.get_charset(default="utf-8").strip().lower()
    if charset not in UTF8_NAMES:
        raise InvalidMultipart(
            f"text field {quoted_name(name)} declares charset {quoted_name(charset)}; "
            "only utf-8 is accepted"
        )
    text = bytearray()
    while chunk := await clock.step(part.read_chunk(READ_CHUNK_BYTES)):
        _check_body_size(request, limits.max_body_bytes)
        text += chunk
        if len(text) > text_budget:
            raise too_large(
                "limits.max_form_bytes, for all text fields together", limits.max_text_bytes
            )
    try:
        upload.pairs.append((name, bytes(text).decode("utf-8")))
    except UnicodeDecodeError:
        raise InvalidMultipart(f"text field {quoted_name(name)} is not valid UTF-8") from None
    return len(text)


def _check_body_size(request: web.Request, max_body_bytes: int) -> None:
    # A chunked body has no Content-Length to refuse up front, so count what has arrived.
    if request.content.total_bytes > max_body_bytes:
        raise too_large("limits.max_body_bytes", max_body_bytes)
