"""Credentials out of text: known secrets by value; JWTs, 64-hex signs, bearer tokens, URL
passwords and phone numbers by shape; the values of keys whose names hold a sensitive word in
query-string and JSON text. And control characters made visible, so text from the network can
never start or hide a log line. Pure: the logging set-up (logs.py) applies it to every record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"
# A JWT, or what is left of one cut short (a message that quotes a value may shorten it before
# any redaction): base64url of a JSON object, `eyJ` being `{"`, with whatever segments follow.
# Eight characters at least, so the word is no accident; what is shorter holds no claim.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}(?:\.[A-Za-z0-9_-]*){0,2}")
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
# Users' phone numbers under any key, or in free text: a mainland mobile number (11 digits,
# 1[3-9]..., the doc's `phone` shape) that is not part of a longer run of digits (a
# millisecond timestamp has 13), and an international one written with its `+`.
_PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)|(?<![\w+])\+\d(?:[ -]?\d){6,14}(?!\d)")


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
    text = _PHONE.sub(REDACTED, text)
    return _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)


def _redacted_pair(match: re.Match[str]) -> str:
    key, spaces = match.group(1), match.group(2)
    return f"{key}{spaces}={REDACTED}" if _SENSITIVE_KEY.search(key) else match.group()


def _redacted_json_pair(match: re.Match[str]) -> str:
    key = match.group(1)
    return f'{key}"{REDACTED}"' if _SENSITIVE_KEY.search(key) else match.group()
