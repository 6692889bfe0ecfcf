"""Logging set-up, with the filter that keeps credentials out of every log line.

Redaction is the last step before a record is written: known secrets (app secrets, caller
tokens) by value; JWTs, 64-hex signs and bearer tokens by shape; and the values of sensitive
keys (`sign`, `accessToken`, `code`, `secret`, `token`, `phone`, `password`) in query-string
and JSON text.
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
_SENSITIVE = r"(?:sign|accessToken|access_token|code|secret|token|phone|mobile|password)"
_PAIR = re.compile(rf"(?i)\b({_SENSITIVE})=[^&\s\"',;]*")
_JSON_PAIR = re.compile(rf"(?i)(\"{_SENSITIVE}\"\s*:\s*)(\"(?:[^\"\\]|\\.)*\"|[0-9+\-]+)")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s/]+@")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    text = _JWT.sub(REDACTED, text)
    text = _HEX_SIGN.sub(REDACTED, text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    text = _PAIR.sub(rf"\g<1>={REDACTED}", text)
    text = _JSON_PAIR.sub(rf'\g<1>"{REDACTED}"', text)
    return _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)


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
        record.msg = redact(record.getMessage(), self._secrets)
        record.args = None
        if record.exc_info:
            # Tracebacks are formatted here so they pass through redaction too.
            record.exc_text = redact(
                logging.Formatter().formatException(record.exc_info), self._secrets
            )
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        return True


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
