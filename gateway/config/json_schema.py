"""gateway.yaml's JSON Schema (draft 2020-12), for editors and check-jsonschema.

The pydantic models (config/schema.py) give the options, their descriptions, defaults, lists of
values and bounds. What the loader does around them is added here, so that the schema accepts
what `load` accepts, as far as JSON Schema can say it:

- `${VAR}` and `${VAR:-default}` are replaced before validation (config/load.py), so one may
  stand for any value, a number or a word of a list too.
- The loader reads YAML 1.1 (PyYAML), where an unquoted yes, no, on or off is a boolean; an
  editor reads YAML 1.2, where it is a string. A boolean option takes those words.
- pydantic reads a number or a boolean written as a string ("8080", "yes"), so the schema
  takes those forms too (it cannot check a string's bounds: check-config does).
- The validators' rules that JSON Schema can say: URLs' schemes, routes, exactly one secret
  source, client_cert with client_key, the names of endpoints and backends.

The rules across sections (`default_app` one of `apps`, a caller's `apps`, `ready_requires`
against the cache and callbacks, `max_in_flight` against `max_connections`) and the reading of
secrets stay the loader's: check-config says what the schema cannot. The schema refuses, on
purpose, what the loader takes by accident: a boolean for a number (`port: true` would be 1),
a string that YAML 1.2 reads as a number (`appid: 1e3`: quote it) and YAML 1.1's base-60
numbers (`1:30`, 90 to PyYAML).

Its keywords are draft 7's too ($defs reached by JSON pointer), so yaml-language-server, which
validates with draft 7, reads all of it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

# The loader's own pattern of a placeholder, so that the two cannot drift apart.
from gateway.config.load import _ENV_REFERENCE
from gateway.config.schema import (
    HOST_PORT_PATTERN,
    PROXY_DIRECT,
    PROXY_FROM_ENV,
    READY_BACKENDS,
    REDIS_FORMS,
    SANDBOX,
    FileConfig,
)
from gateway.core.access import METHODS
from gateway.core.endpoints import ENDPOINTS
from gateway.core.platform import API_PREFIX

DIALECT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "neu-gateway configuration (gateway.yaml)"
PLACEHOLDER = "Placeholder"
_PLACEHOLDER_REF = {"$ref": f"#/$defs/{PLACEHOLDER}"}
# PyYAML's booleans that YAML 1.2 reads as strings (true and false are booleans in both).
_YAML11_BOOLEAN_WORDS = "^(yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$"
# A number or a boolean written as a string (in quotes, as a template may write one), in the
# forms pydantic reads as one.
_DIGITS = "[0-9]+(_[0-9]+)*"
_INTEGER_TEXT = rf"^\s*[+-]?{_DIGITS}(\.0+)?\s*$"
_NUMBER_TEXT = (
    rf"^\s*[+-]?(({_DIGITS}(\.({_DIGITS})?)?|\.{_DIGITS})([eE][+-]?[0-9]+)?"
    r"|[iI][nN][fF]([iI][nN][iI][tT][yY])?|[nN][aA][nN])\s*$"
)
_BOOLEAN_WORDS = ("true", "false", "yes", "no", "on", "off", "t", "f", "y", "n", "1", "0")
# Keywords that describe a value rather than constrain it: they stay on the option when its
# constraints move into an anyOf beside the placeholder.
_ANNOTATIONS = ("title", "description", "default", "examples", "deprecated")
# Formats pydantic names that are no JSON Schema format (editors would warn of them).
_OWN_FORMATS = ("path", "ipv4network", "ipv6network")


def config_schema() -> dict[str, Any]:
    """The JSON Schema of gateway.yaml."""
    generated = FileConfig.model_json_schema(mode="validation")
    definitions: dict[str, Any] = generated.pop("$defs")
    definitions["FileConfig"] = generated
    for name, refine in _REFINEMENTS.items():
        model, _, field = name.partition(".")
        refine(definitions[model]["properties"][field] if field else definitions[model])
    for definition in definitions.values():
        _tidy(definition)
        _take_placeholders(definition)
        _describe_sections(definition, definitions)
    top = definitions.pop("FileConfig")
    del top["title"], top["description"]
    definitions[PLACEHOLDER] = {
        "type": "string",
        "pattern": _ENV_REFERENCE.pattern,
        # A comment, not a description: an editor shows the description of the alternative a
        # value matched, and the option's own is the one to read there.
        "$comment": "${VAR} or ${VAR:-default}, replaced from the environment before validation",
    }
    return {
        "$schema": DIALECT,
        "title": TITLE,
        "description": (
            "The config file of neu-gateway, the signing egress gateway for the SuperApp "
            "OpenAPI. `neu-gateway check-config` checks what this schema cannot: the rules "
            "across sections and the secrets."
        ),
        **top,
        "$defs": dict(sorted(definitions.items())),
    }


def _case_free(word: str) -> str:
    """A pattern of `word` in any case (URL schemes and methods are; ECMA 262 has no (?i))."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def _url_pattern(*schemes: str, query: bool = True) -> str:
    """A URL of one of `schemes` with a host (and with no query or fragment unless `query`)."""
    alternatives = "|".join(_case_free(scheme) for scheme in schemes)
    return f"^({alternatives})://[^/?#\\s]+" + ("" if query else "[^?#]*$")


def _given(field: str) -> dict[str, Any]:
    # A key set to null is no value to the models, so `given` means present and not null.
    return {"required": [field], "properties": {field: {"not": {"type": "null"}}}}


def _exactly_one(*fields: str) -> Callable[[dict[str, Any]], None]:
    def refine(model: dict[str, Any]) -> None:
        model["oneOf"] = [_given(field) for field in fields]

    return refine


def _choice_or_string(choices: list[str], pattern: str) -> Callable[[dict[str, Any]], None]:
    """A string option that is one of `choices` or matches `pattern`."""

    def refine(option: dict[str, Any]) -> None:
        members = option.pop("anyOf", None) or [_constraints(option)]
        either = [{"enum": choices}, {"type": "string", "pattern": pattern}]
        option["anyOf"] = [
            alternative
            for member in members
            for alternative in (either if member.get("type") == "string" else [member])
        ]

    return refine


def _string_pattern(pattern: str) -> Callable[[dict[str, Any]], None]:
    def refine(option: dict[str, Any]) -> None:
        for member in option.get("anyOf", [option]):
            if member.get("type") == "string":
                member["pattern"] = pattern

    return refine


def _items(schema: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def refine(option: dict[str, Any]) -> None:
        option["items"] = copy.deepcopy(schema)

    return refine


def _tls_pairs(model: dict[str, Any]) -> None:
    model["allOf"] = [
        {"if": _given("client_cert"), "then": _given("client_key")},
        {"if": _given("client_key"), "then": _given("client_cert")},
        {
            "if": {"required": ["ca_mode"], "properties": {"ca_mode": {"const": "only"}}},
            "then": _given("ca_file"),
        },
    ]


def _one_redis(model: dict[str, Any]) -> None:
    backend_redis = {"required": ["backend"], "properties": {"backend": {"const": "redis"}}}
    model["allOf"] = [
        {"if": backend_redis, "then": {"oneOf": [_given(form) for form in REDIS_FORMS]}},
        *({"if": _given(form), "then": backend_redis} for form in REDIS_FORMS if form != "url"),
    ]


def _not_both(first: str, second: str) -> dict[str, Any]:
    return {"not": {"allOf": [_given(first), _given(second)]}}


def _redis_login(model: dict[str, Any], *extra: dict[str, Any]) -> None:
    model["allOf"] = [
        _not_both("password_env", "password_file"),
        {
            "if": _given("ca_file"),
            "then": {"required": ["tls"], "properties": {"tls": {"const": True}}},
        },
        *extra,
    ]


def _sentinel_login(model: dict[str, Any]) -> None:
    _redis_login(model, _not_both("sentinel_password_env", "sentinel_password_file"))


def _doc_or_off(option: dict[str, Any]) -> None:
    # The validator reads YAML's booleans as the words they came from (`validation: off`).
    option.pop("type")
    option["enum"] = [*option["enum"], True, False]


def _watch_off_or_sane(option: dict[str, Any]) -> None:
    # 0 is off; a watch more often than 0.1 s is refused (SecretsConfig).
    option["not"] = {"exclusiveMinimum": 0, "exclusiveMaximum": 0.1}


def _endpoint_paths(option: dict[str, Any]) -> None:
    option["propertyNames"] = {"enum": list(ENDPOINTS)}


_METHOD = "|".join(_case_free(method) if method != "*" else r"\*" for method in METHODS)
# Route.parse: the method, one space, then the path (spaces around each are let through).
_ROUTE = f"^\\s*({_METHOD}) \\s*{API_PREFIX}"
_LOOPBACK = r"^(localhost|127(\.[0-9]{1,3}){3}|[0:]*:0*1)$"

# What the models alone do not say, by "Model" or "Model.field": each mirrors a validator.
_REFINEMENTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "AppConfig": _exactly_one("secret_env", "secret_file", "secret"),
    "AppConfig.upstream": _choice_or_string([SANDBOX], _url_pattern("http", "https", query=False)),
    "AppConfig.proxy": _choice_or_string(
        [PROXY_FROM_ENV, PROXY_DIRECT], _url_pattern("http", "https")
    ),
    "AppConfig.validation": _doc_or_off,
    "AppCallbacksConfig.deliver_to": _string_pattern(_url_pattern("http", "https")),
    "FileConfig.proxy": _choice_or_string(
        [PROXY_FROM_ENV, PROXY_DIRECT], _url_pattern("http", "https")
    ),
    "TlsConfig": _tls_pairs,
    "CallerConfig": _exactly_one("token_env", "token_file"),
    "CallerConfig.allow": _items({"type": "string", "pattern": _ROUTE}),
    "CacheConfig": _one_redis,
    "CacheConfig.key_prefix": _string_pattern("^[^{}]*$"),
    "RedisSentinelConfig": _sentinel_login,
    "RedisSentinelConfig.nodes": _items({"type": "string", "pattern": HOST_PORT_PATTERN}),
    "RedisClusterConfig": _redis_login,
    "RedisClusterConfig.nodes": _items({"type": "string", "pattern": HOST_PORT_PATTERN}),
    "CacheConfig.url": _string_pattern(
        "^(" + "|".join(_case_free(s) for s in ("redis", "rediss", "unix")) + "):"
    ),
    "CallbacksConfig.store": _choice_or_string(["redis"], "^sqlite:///"),
    "RetriesConfig.endpoints": _endpoint_paths,
    "AdminConfig.ready_requires": _items({"enum": list(READY_BACKENDS)}),
    "SandboxListenConfig.host": _string_pattern(_LOOPBACK),
    "SecretsConfig.watch_s": _watch_off_or_sane,
    # ipaddress's networks, which no JSON Schema format names.
    "FileConfig.trusted_networks": _items({"type": "string"}),
}


def _tidy(node: Any) -> None:
    """Titles pydantic makes of names go (editors show the description), descriptions become
    one line, a mapping of names has its pattern as propertyNames (so a name that does not
    match is refused rather than let through unchecked), and private formats go."""
    if isinstance(node, list):
        for item in node:
            _tidy(item)
        return
    if not isinstance(node, dict):
        return
    if "description" in node:
        node["description"] = " ".join(node["description"].split())
    if node.get("format") in _OWN_FORMATS:
        del node["format"]
    patterns = node.pop("patternProperties", None)
    if patterns:
        ((pattern, values),) = patterns.items()
        node["propertyNames"] = {"pattern": pattern}
        node["additionalProperties"] = values
    for key, value in node.items():
        if key in ("properties", "$defs"):
            for option in value.values():
                option.pop("title", None)
                _tidy(option)
        elif key not in ("default", "const", "enum", "examples"):
            _tidy(value)


def _describe_sections(model: dict[str, Any], definitions: dict[str, Any]) -> None:
    """A section whose description pydantic left to its model's (the two said the same) gets
    it written beside it too, so each option carries its own."""
    for option in model.get("properties", {}).values():
        reference = option.get("$ref", "")
        if reference and "description" not in option:
            target = definitions[reference.removeprefix("#/$defs/")]
            option["description"] = " ".join(target["description"].split())


def _needs_placeholder(node: dict[str, Any]) -> bool:
    """A scalar that a `${VAR}` string would not match as it stands."""
    kind = node.get("type")
    if "enum" in node or "const" in node or kind in ("integer", "number", "boolean"):
        return True
    if kind is None and "anyOf" in node:
        return any(_needs_placeholder(member) for member in node["anyOf"])
    return kind == "string" and "pattern" in node


def _take_placeholders(node: dict[str, Any]) -> None:
    """Let a placeholder stand for each scalar option, and a number or boolean be written in
    each form the loader reads as one."""
    for option in node.get("properties", {}).values():
        _value(option)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        _value(extra)


def _value(node: dict[str, Any]) -> None:
    if "$ref" in node:
        return
    kind = node.get("type")
    if kind == "object":
        _take_placeholders(node)
        return
    if kind == "array":
        if isinstance(node.get("items"), dict):
            _value(node["items"])
        return
    members: list[dict[str, Any]] = node.get("anyOf", [])
    for member in members:
        if member.get("type") in ("object", "array"):
            _value(member)
    if not _needs_placeholder(node):
        return
    if not members:
        members = node["anyOf"] = [_constraints(node)]
    members[:] = [form for member in members for form in _written_forms(member)]
    members.append(copy.deepcopy(_PLACEHOLDER_REF))


def _written_forms(member: dict[str, Any]) -> list[dict[str, Any]]:
    """`member`, and the other ways a value it takes may be written in gateway.yaml."""
    kind = member.get("type")
    if kind == "integer":
        return [member, {"type": "string", "pattern": _INTEGER_TEXT}]
    if kind == "number":
        return [member, {"type": "string", "pattern": _NUMBER_TEXT}]
    if kind == "boolean":
        words = "|".join(_case_free(word) for word in _BOOLEAN_WORDS)
        # 0 and 1 as a range, not an enum, so that editors do not offer them as values.
        zero_or_one = {"type": "integer", "minimum": 0, "maximum": 1}
        return [member, zero_or_one, {"type": "string", "pattern": f"^({words})$"}]
    if any(value is True for value in member.get("enum", ())):
        return [member, {"type": "string", "pattern": _YAML11_BOOLEAN_WORDS}]
    return [member]


def _constraints(node: dict[str, Any]) -> dict[str, Any]:
    """The keywords of `node` that constrain its value, taken out of it."""
    return {key: node.pop(key) for key in list(node) if key not in _ANNOTATIONS}
