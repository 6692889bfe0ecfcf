"""Caller parameters: query strings, form bodies and JSON bodies into one flat mapping.

Pure functions over bytes. Every key ends up with one text value, as the platform receives it:
repeated keys and JSON lists are joined with commas (the doc's `openIds` is such a list), JSON
numbers keep their literal text, null is empty. Multipart bodies are streamed by `uploads`,
whose text fields join these pairs.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import quote_plus, unquote_to_bytes

from gateway.core.errors import InvalidJson, InvalidParams, SecretParamRejected, quoted_name
from gateway.core.signing import SECRET_KEY

Pairs = list[tuple[str, str]]


class ParamLimits(Protocol):
    @property
    def max_params(self) -> int: ...
    @property
    def max_key_length(self) -> int: ...
    @property
    def max_value_length(self) -> int: ...


# The gateway sets these itself; what a caller sends under these names is dropped.
GATEWAY_KEYS = frozenset({"appid", "timestamp", "sign"})

_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_PIECE = re.compile(rb"[^&]+")
_JSON_START = re.compile(rb"\s*(?:[{[]|%7B|%5B)", re.IGNORECASE)


def parse_urlencoded(raw: bytes, where: str, max_pairs: int | None = None) -> Pairs:
    """`a=1&b=x+y` (a query string or a form body) into decoded pairs, strictly.

    Raises InvalidParams for malformed percent-encoding, bytes that are not UTF-8 and empty
    names, where a lenient parser would forward something the caller did not mean; and, as
    soon as the pair after `max_pairs` is found, for too many parameters, so a body of
    millions of `a=&` costs no more than the limit does.
    """
    if len(raw) <= _SMALL_BYTES and b"%" not in raw and b"+" not in raw:
        try:
            return _parse_plain(raw.decode("utf-8"), where, max_pairs)
        except UnicodeDecodeError:
            pass  # the general path names the problem
    return _parse_pieces(raw, where, max_pairs)


# Below this size, a body is split at once: the pieces cost little, whatever they are.
_SMALL_BYTES = 4096


def _parse_plain(text: str, where: str, max_pairs: int | None) -> Pairs:
    """parse_urlencoded for text with nothing encoded in it (most queries and forms)."""
    pairs: Pairs = []
    for piece in text.split("&"):
        if not piece:
            continue
        if max_pairs is not None and len(pairs) >= max_pairs:
            raise too_many_params(max_pairs)
        key, _, value = piece.partition("=")
        if not key:
            raise InvalidParams(f"a parameter in the {where} has an empty name")
        pairs.append((key, value))
    return pairs


def _parse_pieces(raw: bytes, where: str, max_pairs: int | None) -> Pairs:
    pairs: Pairs = []
    # finditer skips runs of `&` in C and never splits the whole body into pieces at once.
    for match in _PIECE.finditer(raw):
        if max_pairs is not None and len(pairs) >= max_pairs:
            raise too_many_params(max_pairs)
        raw_key, _, raw_value = match.group().partition(b"=")
        key = _decode_component(raw_key, where)
        if not key:
            raise InvalidParams(f"a parameter in the {where} has an empty name")
        pairs.append((key, _decode_component(raw_value, where)))
    return pairs


# What quote_plus leaves as it is: most names and values are made of nothing else.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def form_encoded(fields: Mapping[str, str]) -> str:
    """urlencode(fields), byte for byte, at a fifth of its cost."""
    if _UNRESERVED.fullmatch("".join(fields) + "".join(fields.values())):
        # Nothing to quote anywhere (the usual call): one match for all names and values.
        return "&".join([f"{name}={value}" for name, value in fields.items()])
    return "&".join(
        [f"{_plus_quoted(name)}={_plus_quoted(value)}" for name, value in fields.items()]
    )


def _plus_quoted(text: str) -> str:
    return text if _UNRESERVED.fullmatch(text) else quote_plus(text)


def looks_like_json(form_body: bytes) -> bool:
    """Whether a form body is really JSON sent without its Content-Type: it starts, perhaps
    percent-encoded, with `{` or `[`, which no platform parameter's name does."""
    return _JSON_START.match(form_body) is not None


def too_many_params(limit: int) -> InvalidParams:
    return InvalidParams(f"too many parameters (limits.max_params is {limit})")


def _decode_component(raw: bytes, where: str) -> str:
    try:
        if b"%" not in raw and b"+" not in raw:
            # Nothing encoded, as in most names and values.
            return raw.decode("utf-8")
        if _BAD_PERCENT.search(raw):
            raise InvalidParams(f"malformed percent-encoding in the {where}")
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParams(f"the {where} is not valid UTF-8 after percent-decoding") from None


class _JsonObject(list[tuple[str, Any]]):
    """Marks a decoded JSON object, so nesting can be told apart from a list."""


def parse_json(
    body: bytes, max_pairs: int | None = None, max_value_length: int | None = None
) -> Pairs:
    """A JSON object of scalars and lists of scalars into pairs; anything else is refused."""
    try:
        document = json.loads(
            body.decode("utf-8-sig"),
            object_pairs_hook=_JsonObject,
            # The sign covers the literal text: 1.50 must stay "1.50", not become 1.5.
            parse_int=str,
            parse_float=JsonNumber,
            parse_constant=_reject_constant,
        )
    except UnicodeDecodeError:
        raise InvalidJson("the JSON body is not valid UTF-8") from None
    except RecursionError:
        # json's C scanner recurses per level; the accepted shape is two levels deep anyway.
        raise InvalidJson(
            "the JSON body nests too deeply: send an object of scalars and lists of scalars"
        ) from None
    except ValueError as exc:
        raise InvalidJson(f"the body is not valid JSON ({_json_problem(exc)})") from None
    if not isinstance(document, _JsonObject):
        raise InvalidJson('the JSON body must be an object, e.g. {"tradeNo": "..."}')
    if max_pairs is not None and len(document) > max_pairs:
        raise too_many_params(max_pairs)
    return [
        (_json_key(key), _json_value_text(key, value, max_value_length)) for key, value in document
    ]


class Joined(str):
    """Several values as one comma-joined text: a repeated key, or a JSON list. Where the doc
    takes one value, the gateway can tell a list was sent (`validate(one_value=True)`)."""

    __slots__ = ()


class JsonNumber(str):
    """A JSON number with a fraction or an exponent, as its literal text: a parameter the
    platform reads as a Long takes its value (`whole_numbers`), every other one the text."""

    __slots__ = ()


def _json_key(key: str) -> str:
    if not key:
        raise InvalidJson("a JSON key is empty")
    _require_unicode(key, key)
    return key


def _require_unicode(text: str, key: str) -> None:
    if not is_unicode(text):
        raise InvalidJson(f"JSON key {quoted_name(key)} holds an unpaired surrogate")


def is_unicode(text: str) -> bool:
    """Whether the text can be sent as UTF-8: no lone surrogates, such as the ones that stand
    for undecodable bytes in headers."""
    if text.isascii():
        return True  # known without encoding it: the usual header
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number the platform accepts")


def _json_problem(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc)


def _json_value_text(key: str, value: Any, max_value_length: int | None = None) -> str:
    if isinstance(value, _JsonObject):
        raise InvalidJson(
            f"JSON key {quoted_name(key)} holds an object; "
            "values must be scalars or lists of scalars"
        )
    if isinstance(value, list):
        # Each item is at least one character and a comma: a list this long cannot fit, and
        # is refused before its items are looked at one by one.
        if max_value_length is not None and 2 * len(value) - 1 > max_value_length:
            raise InvalidParams(
                f"the value of {quoted_name(key)} is longer than limits.max_value_length "
                f"({max_value_length})"
            )
        items = []
        for item in value:
            if isinstance(item, list):
                raise InvalidJson(
                    f"JSON key {quoted_name(key)} holds a nested list or object; "
                    "lists may hold scalars only"
                )
            items.append(_json_scalar_text(key, item))
        return Joined(",".join(items))
    return _json_scalar_text(key, value)


def _json_scalar_text(key: str, value: str | bool | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    _require_unicode(value, key)
    return value


def check_limits(pairs: Pairs, files: int, limits: ParamLimits) -> None:
    """Refuses more params, or longer names or values, than the gateway is set to take."""
    if len(pairs) + files > limits.max_params:
        raise InvalidParams(
            f"too many parameters ({len(pairs) + files}; limits.max_params is {limits.max_params})"
        )
    for key, value in pairs:
        if len(key) > limits.max_key_length:
            raise InvalidParams(
                f"parameter name {quoted_name(key)} is longer than limits.max_key_length "
                f"({limits.max_key_length})"
            )
        if len(value) > limits.max_value_length:
            raise InvalidParams(
                f"the value of {quoted_name(key)} is longer than limits.max_value_length "
                f"({limits.max_value_length})"
            )


_JAVA_TRIMMED = "".join(map(chr, range(0x21)))


def is_secret_name(key: str) -> bool:
    """`secret` in any spelling a server might take for it: any case, compatibility forms
    (the long s, U+017F, makes `secret` to Java's equalsIgnoreCase), invisible format
    characters inside it, and anything Java's trim() drops around it (every char <= U+0020)."""
    if key.isascii():
        # ASCII has no format characters, and NFKC and casefold leave it as lower() does.
        return key.lower().strip(_JAVA_TRIMMED) == SECRET_KEY
    visible = "".join(ch for ch in key if unicodedata.category(ch) != "Cf")
    folded = unicodedata.normalize("NFKC", visible).casefold()
    return folded.strip("".join(map(chr, range(0x21))) + " \u00a0") == SECRET_KEY


def caller_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The caller's pairs as the platform will get them, before the gateway's own keys.

    Repeated keys become one comma-joined value in first-seen order. `appid`, `timestamp`
    and `sign` are dropped (the gateway sets them); any spelling of `secret` is refused.
    """
    kept = []
    for key, value in pairs:
        if is_secret_name(key):
            raise SecretParamRejected()
        if key not in GATEWAY_KEYS:
            kept.append((key, value))
    return joined(kept)


def joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Repeated keys as one comma-joined value, in first-seen order, as the platform reads
    them (the doc's openIds=a&openIds=b is openIds=a,b)."""
    fields: dict[str, str] = {}
    # The values of repeated keys, joined once all are in: most requests have none, and skip
    # building a list per key.
    repeated: dict[str, list[str]] = {}
    for key, value in pairs:
        if key in fields:
            repeated.setdefault(key, [fields[key]]).append(value)
        else:
            fields[key] = value
    for key, values in repeated.items():
        fields[key] = Joined(",".join(values))
    return fields
