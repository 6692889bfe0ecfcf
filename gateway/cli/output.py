"""What `serve` prints, in the format of its logs: with JSON logs, every line it writes to
stdout or stderr is a JSON object, the lines that end it (a config it cannot use, a port
taken) included, so a log pipeline reads them as it reads the rest.

Those lines are written with print() where they are found out (cli/config_file.py,
cli/serve.py): here each one becomes a log record (ERROR on stderr, INFO on stdout), the
indented lines under it (a config's problems) joined to it. JSON lines, the access log's,
pass as they are; in text, everything does.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

from gateway import logs

log = logs.logger("neu_gateway")
_PREFIX = "neu-gateway: "
_ACCESS_LINE_START = '{"time": "'
# Of a line printed without its end yet, what is held before it is written as it is.
MAX_PARTIAL_CHARS = 65536


class _Pending:
    """The line waiting for the indented lines under it, from either stream: one at a time,
    so records keep the order the lines were printed in."""

    def __init__(self) -> None:
        self.head: str | None = None
        self.level = logging.ERROR
        self.details: list[str] = []
        # Set while a record is written: a handler writing to the stream of the moment
        # (logging's last resort does) must not come back here.
        self.logging = False

    def start(self, head: str, level: int) -> None:
        self.emit()
        self.head, self.level = head, level

    def add(self, detail: str, level: int) -> bool:
        if self.head is None or level != self.level:
            return False
        self.details.append(detail)
        return True

    def emit(self) -> None:
        if self.head is None:
            return
        message = self.head
        if self.details:
            joiner = " " if message.endswith(":") else "; "
            message += joiner + "; ".join(self.details)
        self.head, self.details = None, []
        self.logging = True
        try:
            log.log(self.level, "%s", message)
        finally:
            self.logging = False


class _LinesAsRecords(io.TextIOBase):
    """A text stream that logs each line it is given once the logs are JSON."""

    def __init__(self, stream: TextIO, level: int, pending: _Pending) -> None:
        super().__init__()
        self._stream = stream
        self._level = level
        self._pending = pending
        # Text after the last line break.
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        pending = self._pending
        if pending.logging or logs.current_format() != "json":
            pending.emit()
            self._stream.write(text)
            return len(text)
        if not self._partial and pending.head is None and _access_lines(text):
            self._stream.write(text)
            return len(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        overflowed = len(self._partial) > MAX_PARTIAL_CHARS
        if overflowed:
            # Printed without an end of line, again and again: a record of its own now, rather
            # than held in memory until one comes.
            lines.append(self._partial)
            self._partial = ""
        for line in lines:
            self._take(line)
        if overflowed:
            pending.emit()
        if pending.head is not None:
            # Its details come in the prints that follow, in this same turn of the loop;
            # with no loop running, the end of the command emits it.
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_soon(pending.emit)
        return len(text)

    def flush(self) -> None:
        self._pending.emit()
        self._stream.flush()

    def close_out(self) -> None:
        if self._partial:
            self._take(self._partial)
            self._partial = ""
        self.flush()

    def _take(self, line: str) -> None:
        if line[:1].isspace() and self._pending.add(line.strip(), self._level):
            return
        self._pending.emit()
        if not line.strip():
            return
        if _is_json_object(line):
            self._stream.write(line + "\n")
            return
        self._pending.start(line.removeprefix(_PREFIX), self._level)


def _access_lines(text: str) -> bool:
    """Whether `text` is whole lines as the JSON access log writes them (logs.py), told by
    their start: many of them a second, not parsed again. Only a shortcut: a batch it misses
    is parsed line by line, and passes all the same."""
    return text.startswith(_ACCESS_LINE_START) and text.endswith("\n")


def _is_json_object(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        # Nested past the parser's depth: not a log line of ours, so it is wrapped as text.
        return False


@contextlib.contextmanager
def in_log_format() -> Iterator[None]:
    """stdout and stderr, while a command runs, each line in the format of the logs."""
    pending = _Pending()
    out = _LinesAsRecords(sys.stdout, logging.INFO, pending)
    err = _LinesAsRecords(sys.stderr, logging.ERROR, pending)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        out.close_out()
        err.close_out()
