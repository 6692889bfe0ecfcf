"""Each parameter's JSON Schema, as the gateway checks it: in a query, form or multipart part
(text), and in a JSON body, where a number or a boolean stands for its literal text.

The schemas say what `core.endpoints.validate` and `core.params` accept, no more and no less
where JSON Schema can say it: an empty value is no value (so an optional one may be empty),
and a long is at most 19 digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.core.endpoints import MAX_WAIT_S, Endpoint, Extra, Kind, Param, RequiredWhen
from gateway.core.signing import FILE_FIELD

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
# -?[0-9]{1,19}, the gateway's check of a platform Long.
LONG_MIN, LONG_MAX = -9_999_999_999_999_999_999, 9_999_999_999_999_999_999
LONG_TEXT = r"^-?[0-9]{1,19}$"
# Positive: not all zeros (the length is bounded apart, by maxLength).
POSITIVE_LONG_TEXT = r"^[0-9]*[1-9][0-9]*$"
# Items that are not blank once stripped, comma-separated.
LIST_TEXT = r"^[^,]*[^,\s][^,]*(,[^,]*[^,\s][^,]*)*$"
# http(s), a host, a path: no query, no fragment. A subset of what the gateway takes (it also
# takes user info and IPv6 literals), so nothing described here is refused.
PLAIN_URL = r"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9][^/?#\s@\[\]:]*(:[0-9]{1,5})?(/[^?#]*)?$"
# `secret` spelled as a server might take it (ASCII spellings; the gateway refuses more).
SECRET_NAME_PATTERN = r"^[\x00-\x20]*[Ss][Ee][Cc][Rr][Ee][Tt][\x00-\x20]*$"  # noqa: S105 (a name to refuse, not a password)


@dataclass(frozen=True)
class Bounds:
    """The gateway's limits that a described value must keep to."""

    max_value_length: int | None = None
    max_key_length: int | None = None
    max_params: int | None = None
    # False under `validation: off`: then only required parameters are checked.
    values_checked: bool = True


@dataclass
class Fields:
    """An endpoint's parameters as schemas: `text` as a query or form carries them, `json`
    as a JSON body may."""

    text: dict[str, dict[str, Any]]
    json: dict[str, dict[str, Any]]
    required: list[str]
    rules: list[dict[str, Any]]


def endpoint_fields(endpoint: Endpoint, bounds: Bounds) -> Fields:
    text = {param.name: text_schema(param, bounds) for param in endpoint.params}
    json = {param.name: json_schema(param, bounds) for param in endpoint.params}
    required = [param.name for param in endpoint.params if param.required]
    for stand_in, replaced in endpoint.stand_ins:
        for schemas in (text, json):
            schemas[stand_in] = {
                **_text(bounds, required=False),
                "description": f"The gateway's extension: instead of `{replaced}`.",
            }
            schemas[replaced] = {
                **schemas[replaced],
                "description": f"Required unless `{stand_in}` is sent.",
            }
        required.remove(replaced)
    if endpoint.extra is Extra.TRADE_WAIT:
        wait = {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_WAIT_S,
            "description": "The gateway's extension: seconds to wait for the trade to leave "
            "processing.",
        }
        text["wait"] = json["wait"] = wait
    rules = [
        {
            "if": {
                "properties": {rule.name: {"enum": [rule.value, *_as_number(rule.value)]}},
                "required": [rule.name],
            },
            # Present, and not empty: "" and null are no value.
            "then": {
                "required": [rule.required],
                "properties": {rule.required: {"minLength": 1, "not": {"type": "null"}}},
            },
        }
        for rule in endpoint.rules
        if isinstance(rule, RequiredWhen) and bounds.values_checked
    ]
    return Fields(text, json, required, rules)


def _as_number(value: str) -> list[int]:
    # In a JSON body the number 2 is the text "2".
    return [int(value)] if value.isascii() and value.isdigit() else []


def text_schema(param: Param, bounds: Bounds) -> dict[str, Any]:
    """The parameter as text: a query, a form field, a multipart part."""
    if not bounds.values_checked:
        return _text(bounds, required=param.required)
    if param.kind in (Kind.LONG, Kind.POSITIVE_LONG):
        number = _long(param)
        # A form's empty value is no value: an optional long may be sent empty.
        return number if param.required else {"anyOf": [number, {"const": ""}]}
    schema = _text(bounds, required=param.required)
    if param.choices:
        schema["enum"] = [*param.choices, *([] if param.required else [""])]
    pattern = _pattern(param)
    if pattern is not None:
        schema["pattern"] = pattern if param.required else f"^$|{pattern}"
    return schema


def json_schema(param: Param, bounds: Bounds) -> dict[str, Any]:
    """The parameter in a JSON body: its text as a string, or a number or boolean whose
    literal text passes the same checks (null is an empty value)."""
    if not bounds.values_checked:
        # Only presence is checked: any scalar, or a list of them.
        schema = _text(bounds, required=param.required)
        schema["type"] = ["string", "number", "boolean", *_null(param)]
        array: dict[str, Any] = {"type": "array", "minItems": 1, "items": _any_scalar()}
        if param.required:
            # One empty value in a list joins to an empty value: no value (two join to ",").
            array["not"] = {"maxItems": 1, "items": {"enum": [None, ""]}}
        return {"anyOf": [schema, array]}
    if param.kind in (Kind.LONG, Kind.POSITIVE_LONG):
        if param.choices:
            return _one_of(
                {"type": "string", "enum": list(param.choices)},
                {"type": "integer", "enum": [int(choice) for choice in param.choices]},
                param=param,
            )
        positive = param.kind is Kind.POSITIVE_LONG
        return {
            "anyOf": [
                _long(param),
                {
                    "type": "string",
                    "pattern": POSITIVE_LONG_TEXT if positive else LONG_TEXT,
                    "maxLength": 19,
                },
                # An optional one's empty value is no value.
                *({"enum": [None, ""]} for _ in _null(param)),
            ]
        }
    if param.choices:
        numbers = [int(choice) for choice in param.choices if _as_number(choice)]
        # A JSON number stands for its text: 1 is "1".
        return _one_of(
            {"type": "string", "enum": list(param.choices)},
            *([{"type": "integer", "enum": numbers}] if numbers else []),
            param=param,
        )
    schema = _text(bounds, required=param.required)
    pattern = _pattern(param)
    if pattern is not None:
        schema["pattern"] = pattern if param.required else f"^$|{pattern}"
    if param.kind is Kind.LIST:
        item = {"type": "string", "pattern": LIST_TEXT}
        return {
            "anyOf": [
                schema,
                {"type": ["number", "boolean"]},
                {"type": "array", "minItems": 1, "items": {"anyOf": [item, _scalars()]}},
                *({"type": "null"} for _ in _null(param)),
            ],
            "description": "comma-separated text, or a list",
        }
    # Numbers and booleans only where their literal text passes the pattern too.
    scalars = (
        ["number", "boolean"]
        if pattern is None
        else ["integer", "boolean"]
        if param.pattern is not None
        else []
    )
    schema["type"] = ["string", *scalars, *_null(param)]
    return schema


def _long(param: Param) -> dict[str, Any]:
    if param.choices:
        return {"type": "integer", "enum": [int(choice) for choice in param.choices]}
    return {
        "type": "integer",
        "minimum": 1 if param.kind is Kind.POSITIVE_LONG else LONG_MIN,
        "maximum": LONG_MAX,
    }


def _pattern(param: Param) -> str | None:
    if param.kind is Kind.URL:
        return PLAIN_URL
    if param.kind is Kind.LIST:
        return LIST_TEXT
    if param.items:
        # Known items, comma-separated; blank items are skipped.
        known = "|".join(re.escape(item) for item in param.items)
        return rf"^[\s,]*(({known})\s*(,[\s,]*|$))*$"
    if param.pattern is not None:
        return param.pattern.pattern
    return None


def _text(bounds: Bounds, *, required: bool) -> dict[str, Any]:
    # An empty value is no value: the gateway treats it as absent.
    schema: dict[str, Any] = {"type": "string"}
    if required:
        schema["minLength"] = 1
    if bounds.max_value_length is not None:
        schema["maxLength"] = bounds.max_value_length
    return schema


def _null(param: Param) -> list[str]:
    return [] if param.required else ["null"]


def _one_of(*schemas: dict[str, Any], param: Param) -> dict[str, Any]:
    """Any of these; an optional parameter may also be null or empty (no value)."""
    if not param.required:
        schemas = (*schemas, {"enum": [None, ""]})
    return schemas[0] if len(schemas) == 1 else {"anyOf": list(schemas)}


def _scalars() -> dict[str, Any]:
    return {"type": ["number", "boolean"]}


def _any_scalar() -> dict[str, Any]:
    return {"type": ["string", "number", "boolean", "null"]}


def extra_text(bounds: Bounds) -> dict[str, Any]:
    """Parameters the doc does not list: forwarded and signed as they came."""
    schema: dict[str, Any] = {"type": "string"}
    if bounds.max_value_length is not None:
        schema["maxLength"] = bounds.max_value_length
    return schema


def extra_json(bounds: Bounds) -> dict[str, Any]:
    scalar = {"anyOf": [extra_text(bounds), {"type": ["number", "boolean", "null"]}]}
    return {"anyOf": [scalar, {"type": "array", "items": scalar}]}


def names(bounds: Bounds, *, in_header: bool = False) -> dict[str, Any]:
    """What a parameter's name may be: not empty, not too long, never `secret`; and, as a
    multipart part's name (in its Content-Disposition header), no control characters."""
    schema: dict[str, Any] = {"minLength": 1, "not": {"pattern": SECRET_NAME_PATTERN}}
    if in_header:
        # Nor a backslash, nor a leading slash: the gateway refuses those (see uploads.py).
        schema["pattern"] = r"^[^\x00-\x1f\x7f\\/][^\x00-\x1f\x7f\\]*$"
    if bounds.max_key_length is not None:
        schema["maxLength"] = bounds.max_key_length
    return schema


def body_schema(fields: Fields, bounds: Bounds, media_type: str) -> dict[str, Any]:
    """The body's schema, for a form, JSON or multipart/form-data."""
    as_json = media_type == JSON
    properties = dict(fields.json if as_json else fields.text)
    if media_type == MULTIPART:
        properties[FILE_FIELD] = {
            "type": "string",
            # OpenAPI 3.1's way to say bytes. Not 3.0's format: binary as well, though
            # openapi-python-client would then type it as a File: schemathesis cannot generate
            # such a part (its coverage phase fails on it).
            "contentMediaType": "application/octet-stream",
            "description": "A file, forwarded byte for byte and never signed.",
        }
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": extra_json(bounds) if as_json else extra_text(bounds),
        "propertyNames": names(bounds, in_header=media_type == MULTIPART),
    }
    if fields.required:
        schema["required"] = fields.required
    if fields.rules:
        schema["allOf"] = fields.rules
    if bounds.max_params is not None:
        schema["maxProperties"] = bounds.max_params
    return schema
