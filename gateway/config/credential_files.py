"""A secret or token file's text, read so that no file can stall or swell the reader.

These files are read at the start, and again every `secrets.watch_s` seconds by the watch
(runtime/secret_files.py). A path that names a FIFO would block the read until some writer
came (the watch stuck for good, and the process unable to exit, as its thread never returns),
`/dev/zero` or a large file named by mistake would be read whole each time and end up as a
"secret" the log redaction searches for in every line. So only a regular file is read, and
only up to a size no credential comes near.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# Far above any secret or token (the platform's are tens of characters), far below harm.
MAX_CREDENTIAL_FILE_BYTES = 64 * 1024


class CredentialFileError(Exception):
    """Why a credential file cannot be read: a reason fit for a message, never its content."""


def read_credential_file(path: Path) -> str:
    """The file's text, stripped (raises CredentialFileError)."""
    try:
        # Non-blocking, so opening a FIFO returns at once instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CredentialFileError(exc.strerror or type(exc).__name__) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CredentialFileError("not a regular file")
        data = b""
        while len(data) <= MAX_CREDENTIAL_FILE_BYTES:
            # A short read is not the end (FUSE and network file systems give them).
            chunk = os.read(fd, MAX_CREDENTIAL_FILE_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise CredentialFileError(exc.strerror or type(exc).__name__) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CREDENTIAL_FILE_BYTES:
        raise CredentialFileError(f"larger than {MAX_CREDENTIAL_FILE_BYTES} bytes")
    if data.startswith(b"\xef\xbb\xbf"):
        # Invisible in an editor, yet part of the value: every sign made with it would be
        # refused, with nothing to see in the file.
        raise CredentialFileError(
            "starts with a byte order mark (U+FEFF); save it as UTF-8 without one"
        )
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CredentialFileError("not UTF-8 text") from None
    if "\n" in text or "\r" in text:
        # Two values in one file (an old and a new secret pasted together, say): taken
        # whole it would sign nothing the platform accepts, so it is refused by name.
        raise CredentialFileError("more than one line")
    return text
