"""Logging set-up, with the filter that keeps credentials out of every log line.

Redaction is the last step before a record is written: known secrets (app secrets, caller
tokens) by value; JWTs, 64-hex signs and bearer tokens by shape; and the values of keys whose
names hold a sensitive word (`sign`, `token`, `code`, `secret`, `phone`, `mobile`, `password`,
`auth`, `credential`: so `accessToken`, `authCode`, `phoneNumber` too) in query-string and JSON
text. Then every control character is escaped, so nothing that came from the network can
break a line: a record is always one line, and a traceback's lines are indented under it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

REDACTED = "[redacted]"
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_HEX_SIGN = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
# A key is sensitive when its name holds one of these words anywhere (authCode, phoneNumber,
# refresh_token[], mobile(1)): the platform adds keys, and a list of names would lag.
_SENSITIVE_KEY = re.compile(
    r"(?i)sign|token|code|secret|phone|mobile|tel|msisdn|password|passwd|auth|credential"
    r"|otp|pin|captcha|key|cvv|card|ticket|session|cookie"
)
_DELIMITERS = r"\s&?=;,\"'"
# key=value, the key a whole run between delimiters (a match starts only where a run does and
# takes it possessively, so any text costs linear time), spaces allowed before the `=`.
_PAIR = re.compile(rf"(?<![^{_DELIMITERS}])([^{_DELIMITERS}]++)(\s*+)=[^&\s\"',;]*+")
# "key": value in JSON text; a key holds no quote, so each try ends at its closing one.
_JSON_PAIR = re.compile(r'("[^"]*+"\s*+:\s*+)("(?:[^"\\]++|\\.)*+"|[0-9+\-]++)')
# C0 and C1 controls (line breaks among them) and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s/]+@")


def escape_controls(text: str) -> str:
    """Control characters as visible escapes, so a value from the network (a path segment,
    a header) can never start a forged log line or hide part of a real one."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    return named or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def escape_traceback(text: str) -> str:
    """A traceback's lines each indented, so no line of it can pass for a record of its own."""
    return "\n".join("    " + escape_controls(line) for line in text.splitlines())


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    text = _JWT.sub(REDACTED, text)
    text = _HEX_SIGN.sub(REDACTED, text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    text = _PAIR.sub(_redacted_pair, text)
    text = _JSON_PAIR.sub(_redacted_json_pair, text)
    return _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)


def _redacted_pair(match: re.Match[str]) -> str:
    key, spaces = match.group(1), match.group(2)
    return f"{key}{spaces}={REDACTED}" if _SENSITIVE_KEY.search(key) else match.group()


def _redacted_json_pair(match: re.Match[str]) -> str:
    key = match.group(1)
    return f'{key}"{REDACTED}"' if _SENSITIVE_KEY.search(key) else match.group()


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback) with credentials redacted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Values to redact wherever they appear, e.g. once the config has been read."""
        self._secrets = tuple(sorted({*self._secrets, *(s for s in secrets if s)}))

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _CLEANED, False):
            # Already done by the logger's own filter; a handler sees the same record again.
            return True
        record.msg = escape_controls(redact(record.getMessage(), self._secrets))
        record.args = None
        if record.exc_info:
            # Tracebacks are formatted here so they pass through redaction too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = escape_traceback(redact(record.exc_text, self._secrets))
        setattr(record, _CLEANED, True)
        return True


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


def configure(level: str) -> None:
    """Log to stderr, every handler behind the redacting filter."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(REDACTION)
    # Libraries warn with text from the request (aiohttp quotes a bad Content-Disposition):
    # through logging, it is escaped and redacted like every other line.
    logging.captureWarnings(True)
