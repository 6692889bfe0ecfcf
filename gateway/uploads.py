"""multipart/form-data from a caller: text fields become params, file parts are spooled.

A file part is never held whole in memory: it is read in chunks into a spool that stays in
memory while small and moves to an anonymous temporary file beyond SPOOL_MEMORY_BYTES, then is
streamed to the upstream from there. Its bytes are never decoded or changed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import IO

from aiohttp import BodyPartReader, MultipartReader, payload, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import BodyTooLarge, InvalidMultipart, quoted_name
from gateway.params import Pairs

SPOOL_MEMORY_BYTES = 1 << 20
READ_CHUNK_BYTES = 1 << 16
MAX_TEXT_FIELD_BYTES = 1 << 20
FILE_FIELD = "fileData"
DEFAULT_FILE_TYPE = "application/octet-stream"


class Spool:
    """Bytes kept in memory up to a bound, then in an unlinked temporary file."""

    def __init__(self, memory_limit: int = SPOOL_MEMORY_BYTES) -> None:
        self._memory_limit = memory_limit
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self.size = 0

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._file is None and len(self._memory) + len(chunk) <= self._memory_limit:
            self._memory += chunk
            return
        if self._file is None:
            # TemporaryFile is unlinked at once, so a crash leaves nothing behind on disk.
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            self._file.write(self._memory)
            self._memory = bytearray()
        # Chunk-sized writes land in the page cache; an executor hop per chunk costs more.
        self._file.write(chunk)

    def payload(self, content_type: str) -> payload.Payload:
        """A payload that streams the spooled bytes from the start."""
        if self._file is None:
            return payload.BytesPayload(bytes(self._memory), content_type=content_type)
        self._file.flush()
        self._file.seek(0)
        return payload.BufferedReaderPayload(self._file, content_type=content_type)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._memory = bytearray()


@dataclass
class FilePart:
    """One uploaded file, forwarded byte for byte and never signed."""

    name: str
    filename: str | None
    content_type: str
    spool: Spool


@dataclass
class Upload:
    """A parsed multipart body: text pairs in order, and the spooled file parts."""

    pairs: Pairs = field(default_factory=list)
    files: list[FilePart] = field(default_factory=list)

    def close(self) -> None:
        for part in self.files:
            part.spool.close()


async def read_multipart(request: web.Request, max_body_bytes: int) -> Upload:
    """Read the caller's multipart body; the caller must close() the result."""
    upload = Upload()
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if isinstance(part, MultipartReader):
                raise InvalidMultipart("nested multipart parts are not supported")
            await _read_part(part, upload, request, max_body_bytes)
    except (HttpProcessingError, ValueError, RuntimeError, AssertionError, LookupError) as exc:
        upload.close()
        raise InvalidMultipart(
            f"the multipart/form-data body is malformed ({_reason(exc)})"
        ) from exc
    except BaseException:
        upload.close()
        raise
    return upload


def _reason(exc: Exception) -> str:
    # aiohttp's messages can quote body bytes; keep the kind of failure, not the content.
    text = str(exc).split(":")[0].split("b'")[0].strip()
    return text[:80] or type(exc).__name__


async def _read_part(
    part: BodyPartReader, upload: Upload, request: web.Request, max_body_bytes: int
) -> None:
    name = part.name
    if not name:
        raise InvalidMultipart("a multipart part has no name in its Content-Disposition")
    if part.filename is not None or name == FILE_FIELD:
        spool = Spool()
        upload.files.append(
            FilePart(
                name, part.filename, part.headers.get("Content-Type", DEFAULT_FILE_TYPE), spool
            )
        )
        while chunk := await part.read_chunk(READ_CHUNK_BYTES):
            _check_body_size(request, max_body_bytes)
            spool.write(chunk)
        return
    text = bytearray()
    while chunk := await part.read_chunk(READ_CHUNK_BYTES):
        _check_body_size(request, max_body_bytes)
        text += chunk
        if len(text) > MAX_TEXT_FIELD_BYTES:
            raise InvalidMultipart(
                f"text field {quoted_name(name)} is over {MAX_TEXT_FIELD_BYTES} bytes; "
                "send large content as a file part"
            )
    charset = part.get_charset(default="utf-8")
    try:
        upload.pairs.append((name, bytes(text).decode(charset)))
    except (UnicodeDecodeError, LookupError):
        raise InvalidMultipart(
            f"text field {quoted_name(name)} is not valid {quoted_name(charset)} text"
        ) from None


def _check_body_size(request: web.Request, max_body_bytes: int) -> None:
    # A chunked body has no Content-Length to refuse up front, so count what has arrived.
    if request.content.total_bytes > max_body_bytes:
        raise BodyTooLarge()
