"""Logging set-up, with the filter that keeps credentials out of every log line.

Redaction is the last step before a record is written: known secrets (app secrets, caller
tokens) by value; JWTs (cut short too), 64-hex signs and bearer tokens by shape; and the
values of keys whose names hold a sensitive word (`sign`, `token`, `code`, `secret`, `phone`,
`mobile`, `password`, `auth`, `credential`: so `accessToken`, `authCode`, `phoneNumber` too)
in query-string and JSON text; and phone numbers by their shape, under any key. Then every
control character is escaped, so nothing that came from the network can break a line: a
record is always one line, and a traceback's lines are indented under it. A value shortened
for a message goes through `clipped`, which redacts it whole before it cuts.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from gateway.core.redaction import REDACTED, escape_controls, escape_traceback, redact


def clipped(text: str, limit: int, secrets: Iterable[str] | None = None) -> str:
    """`text` redacted whole, then cut to about `limit` characters for a message or a log
    line. In that order: a credential cut first no longer has the shape, or the value, that
    redaction looks for. A cut never splits a redaction mark; `…` says something was cut."""
    cleaned = redact(text, REDACTION.secrets if secrets is None else secrets)
    if len(cleaned) <= limit:
        return cleaned
    for mark in re.finditer(re.escape(REDACTED), cleaned):
        if mark.start() < limit < mark.end():
            limit = mark.end()
            break
    return cleaned if limit >= len(cleaned) else cleaned[:limit] + "…"


# Values a process redacts at most. A retired secret stays redacted (a line about a request
# in flight may hold it), but not forever: a token file that something rewrites every few
# minutes would otherwise grow the list, and the cost of every log line, without end. What is
# in force is added again at each reload and each rotation, so only the longest retired go.
MAX_REDACTED_SECRETS = 1000


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback) with credentials redacted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        # Each value, oldest added first (a dict keeps the order).
        self._added: dict[str, None] = {}
        self.add_secrets(secrets)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Values to redact wherever they appear, e.g. once the config has been read: the
        latest MAX_REDACTED_SECRETS added (one added again counts as new)."""
        added = self._added
        for secret in secrets:
            if secret:
                added.pop(secret, None)
                added[secret] = None
        while len(added) > MAX_REDACTED_SECRETS:
            del added[next(iter(added))]
        self._secrets = tuple(sorted(added))

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _CLEANED, False):
            # Already done by the logger's own filter; a handler sees the same record again.
            return True
        record.msg = escape_controls(redact(record.getMessage(), self._secrets))
        record.args = None
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            setattr(record, FIELDS, {key: self._clean(value) for key, value in fields.items()})
        if record.exc_info:
            # Tracebacks are formatted here so they pass through redaction too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = escape_traceback(redact(record.exc_text, self._secrets))
        setattr(record, _CLEANED, True)
        return True

    def _clean(self, value: Any) -> Any:
        return escape_controls(redact(value, self._secrets)) if isinstance(value, str) else value


_CLEANED = "neu_cleaned"


# The one filter: on every gateway logger (so it holds wherever the records go) and, once
# configure() ran, on every handler (for other libraries' records too).
REDACTION = RedactingFilter()


def logger(name: str) -> logging.Logger:
    """A gateway logger, its records redacted before any handler sees them."""
    named = logging.getLogger(name)
    if REDACTION not in named.filters:
        named.addFilter(REDACTION)
    return named


# A record's structured fields (the access log's), as `extra={FIELDS: {...}}`: top-level keys
# of a JSON line; in text they are already in the message.
FIELDS = "neu_fields"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then the record's fields."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        if self._worker is not None:
            line["worker"] = self._worker
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            # The message repeats the fields as text; the JSON line has them as they are.
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["traceback"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def current_format() -> str | None:
    """The format configure() set, `json` or `text`; None before it ran."""
    return _direct_format


def choose_format(configured: str | None) -> str:
    """`json` or `text`: as configured, else JSON unless a person reads stderr."""
    if configured is not None:
        return configured
    return "text" if sys.stderr.isatty() else "json"


_ACCESS = logger("neu_gateway.access")
# Set by configure(): access lines are written straight to stderr, without a LogRecord each.
_direct_format: str | None = None


class AccessLine(NamedTuple):
    """One request's access line, its fields in the order they are written. `path` and
    `user_agent` came from the network and are redacted here (the user agent cut short too);
    the others are names from the config, numbers, checked ids, the socket's peer address and
    the parser's method token."""

    request_id: str
    caller: str
    app: str
    method: str
    route: str
    status: int
    path: str
    upstream_status: str
    platform_status: str
    duration_ms: float
    upstream_ms: float
    bytes_in: int
    bytes_out: int
    # W3C trace id (core/tracing.py), the peer's address, the caller's User-Agent; empty for
    # a request refused before it was read.
    trace_id: str = ""
    remote: str = ""
    user_agent: str = ""
    # In a worker of `serve --workers`: its index.
    worker: int | None = None

    def fields(self) -> dict[str, Any]:
        fields = self._asdict()
        if self.worker is None:
            del fields["worker"]
        return fields


def access(line: AccessLine) -> None:
    """Writes one access line.

    Once configure() ran, the line skips the logging machinery (a record, its filters, its
    formatter): a tenth of a request's cost. Otherwise (tests, an embedding program) it is an
    ordinary record.
    """
    if not _ACCESS.isEnabledFor(logging.INFO):
        return
    agent = _agent(line.user_agent)
    if _direct_format is None:
        fields = line.fields()
        fields["user_agent"] = agent
        _ACCESS.info(_as_text(fields), extra={FIELDS: fields})
        return
    path = _cleaned(line.path)
    _pending.append(
        _access_json(line, path, agent)
        if _direct_format == "json"
        else _access_text(line, path, agent)
    )
    if len(_pending) == 1:
        try:
            asyncio.get_running_loop().call_soon(write_pending)
        except RuntimeError:
            write_pending()


# A User-Agent is logged up to this many characters: enough to tell clients apart.
USER_AGENT_LENGTH = 256


def _agent(value: str) -> str:
    if len(value) <= USER_AGENT_LENGTH:
        return _cleaned(value)
    return escape_controls(clipped(value, USER_AGENT_LENGTH))


def _as_text(fields: dict[str, Any]) -> str:
    """`key=value ...`; a value that is empty or holds a space or a quote is written quoted,
    as JSON writes a string, so the line still splits into its fields."""
    return " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())


def _text_value(value: Any) -> str:
    text = str(value)
    if isinstance(value, str) and (not text or " " in text or '"' in text):
        return encode_basestring(text)
    return text


# Untrusted values already redacted, for the secrets of the moment: most requests name one
# of a few paths. Short values only, and a bounded number, whatever callers send.
_CLEANED_CACHE_SIZE = 1024
_CLEANED_MAX_LENGTH = 256
_cleaned_cache: dict[str, str] = {}
_cleaned_for: tuple[str, ...] = ()


def _cleaned(value: str) -> str:
    global _cleaned_for
    secrets = REDACTION.secrets
    if secrets is not _cleaned_for:
        _cleaned_cache.clear()
        _cleaned_for = secrets
    cleaned = _cleaned_cache.get(value)
    if cleaned is None:
        cleaned = escape_controls(redact(value, secrets))
        if len(value) <= _CLEANED_MAX_LENGTH:
            if len(_cleaned_cache) >= _CLEANED_CACHE_SIZE:
                _cleaned_cache.clear()
            _cleaned_cache[value] = cleaned
    return cleaned


# Access lines waiting for the end of this turn of the event loop: under load, one write
# (one system call) carries the lines of many requests.
_pending: list[str] = []


# A pipe takes a write of up to this many bytes whole (POSIX PIPE_BUF, 4096 on Linux): the
# workers of `serve --workers` share one stderr, and a larger write could be interleaved with
# another worker's, tearing lines apart.
ATOMIC_WRITE_BYTES = 4096


def write_pending() -> None:
    if not _pending:
        return
    lines = _pending[:]
    _pending.clear()
    # A closed stderr (its reader gone) costs the lines, never a request.
    with contextlib.suppress(OSError, ValueError):
        for chunk in _whole_lines_within(lines, ATOMIC_WRITE_BYTES):
            sys.stderr.write(chunk)
            sys.stderr.flush()


def _whole_lines_within(lines: list[str], limit: int) -> Iterator[str]:
    """The lines joined into as few texts as can be, each of whole lines and at most `limit`
    bytes in UTF-8 (a longer line alone)."""
    start, size = 0, 0
    for index, line in enumerate(lines):
        length = len(line) if line.isascii() else len(line.encode("utf-8", "replace"))
        if size + length > limit and index > start:
            yield "".join(lines[start:index])
            start, size = index, 0
        size += length
    yield "".join(lines[start:])


# Lines of the last turn, when the process ends between turns.
atexit.register(write_pending)


# The UTC second last formatted, and its text: a busy gateway logs many lines a second.
_second: tuple[int, str] = (-1, "")


def _utc_stamp(now: float) -> str:
    """As datetime's isoformat(timespec="milliseconds") in UTC, the second formatted once."""
    global _second
    whole = int(now)
    # Rounded to the microsecond first, as datetime.fromtimestamp does.
    micros = round((now - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    if whole != _second[0]:
        _second = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{micros // 1000:03d}+00:00"


def _access_json(line: AccessLine, path: str, agent: str) -> str:
    """The line as JSON, as json.dumps(..., ensure_ascii=False) writes it, written out field
    by field: a third of what building a dict and encoding it costs. `path` and `agent` stand
    for line.path and line.user_agent (redacted)."""
    quoted = encode_basestring
    worker = "" if line.worker is None else f', "worker": {line.worker:d}'
    return (
        f'{{"time": "{_utc_stamp(time.time())}", "level": "INFO", "logger": "{_ACCESS.name}", '
        f'"request_id": {quoted(line.request_id)}, "caller": {quoted(line.caller)}, '
        f'"app": {quoted(line.app)}, "method": {quoted(line.method)}, '
        f'"route": {quoted(line.route)}, "status": {line.status:d}, '
        f'"path": {quoted(path)}, "upstream_status": {quoted(line.upstream_status)}, '
        f'"platform_status": {quoted(line.platform_status)}, '
        f'"duration_ms": {float(line.duration_ms)!r}, '
        f'"upstream_ms": {float(line.upstream_ms)!r}, '
        f'"bytes_in": {line.bytes_in:d}, "bytes_out": {line.bytes_out:d}, '
        f'"trace_id": {quoted(line.trace_id)}, "remote": {quoted(line.remote)}, '
        f'"user_agent": {quoted(agent)}{worker}}}\n'
    )


def _access_text(line: AccessLine, path: str, agent: str) -> str:
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    fields = line.fields()
    fields["path"] = path
    fields["user_agent"] = agent
    text = _as_text(fields)
    return f"{stamp},{int(now % 1 * 1000):03d} INFO {_ACCESS.name} {text}\n"


def configure(level: str, log_format: str | None = None, worker: int | None = None) -> None:
    """Log to stderr in `log_format` (see choose_format), every handler behind the filter;
    in a worker of `serve --workers`, every line names the worker.

    Called again once the config is read, to switch to the format it names.
    """
    logging.basicConfig(level=getattr(logging, level), format=TEXT_FORMAT, stream=sys.stderr)
    logging.getLogger().setLevel(getattr(logging, level))
    text_format = TEXT_FORMAT
    if worker is not None:
        # (The access lines carry it among their own fields.)
        text_format = TEXT_FORMAT.replace("%(name)s", f"%(name)s worker={worker}")
    formatter = (
        JsonFormatter(worker)
        if choose_format(log_format) == "json"
        else logging.Formatter(text_format)
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(REDACTION)
        handler.setFormatter(formatter)
    global _direct_format
    _direct_format = choose_format(log_format)
    # Libraries warn with text from the request (aiohttp quotes a bad Content-Disposition):
    # through logging, it is escaped and redacted like every other line.
    logging.captureWarnings(True)
