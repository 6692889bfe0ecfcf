"""gateway.yaml's JSON Schema: what editors are told of each option, and that it agrees with the
loader on which files are valid.

A file is read twice, as each side reads it: by PyYAML (YAML 1.1) for the loader, and by
ruamel.yaml (YAML 1.2, as check-jsonschema and editors read it) for the schema.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, Draft202012Validator
from pydantic import BaseModel
from ruamel.yaml import YAML

from gateway.cli.schema_file import schema_text
from gateway.config.errors import ConfigError
from gateway.config.json_schema import DIALECT, config_schema
from gateway.config.load import from_mapping
from gateway.config.schema import FileConfig
from gateway.core.secrets import DEMO_SIGNING_SECRET
from tests.support.paths import DETAIL

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "docs" / "gateway.schema.json"
ENVIRON = {"S": "the-app-secret", "T": "t" * 32, "W": DEMO_SIGNING_SECRET}
VALIDATOR = Draft202012Validator(config_schema())
EDITOR_YAML = YAML(typ="safe")

BASE = """\
apps:
  demo:
    appid: a1
    secret_env: S
    upstream: https://platform.example
callers:
  ops:
    token_env: T
    apps: [demo]
    allow: ["GET /neuopenapi/*"]
"""
# The key under each mapping of names that the generated documents fill in.
NAMES = {"apps": "demo", "callers": "ops", "endpoints": DETAIL}


def loader_accepts(text: str, environ: dict[str, str] = ENVIRON) -> bool:
    try:
        from_mapping(yaml.safe_load(text), environ)
    except ConfigError:
        return False
    return True


def schema_accepts(text: str) -> bool:
    return VALIDATOR.is_valid(EDITOR_YAML.load(text))


def with_option(path: tuple[str, ...], scalar: str, base: str = BASE) -> str:
    """`base` with the option at `path` written as `scalar`, as it would be in the file."""
    document = yaml.safe_load(base)
    section = document
    for key in path[:-1]:
        section = section.setdefault(key, {})
    section[path[-1]] = "VALUE-GOES-HERE"
    text = yaml.safe_dump(document, sort_keys=False)
    assert text.count("VALUE-GOES-HERE") == 1
    return text.replace("VALUE-GOES-HERE", scalar)


# --- what editors are told ---------------------------------------------------------------------


def test_the_shipped_schema_is_the_generated_one() -> None:
    assert SHIPPED.read_text(encoding="utf-8") == schema_text(), (
        "docs/gateway.schema.json is not the schema of these models; regenerate it with: "
        "neu-gateway schema > docs/gateway.schema.json"
    )


def test_the_schema_is_a_draft_2020_12_schema_with_a_title() -> None:
    schema = config_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DIALECT
    assert schema["title"]
    assert schema["description"]
    assert schema == config_schema(), "the same schema each time"


def subschemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema within `node`, itself included."""
    if not isinstance(node, dict):
        return
    yield node
    for key in ("properties", "$defs"):
        for child in node.get(key, {}).values():
            yield from subschemas(child)
    for key in ("items", "additionalProperties", "propertyNames", "not", "if", "then", "else"):
        yield from subschemas(node.get(key))
    for key in ("anyOf", "oneOf", "allOf"):
        for child in node.get(key, []):
            yield from subschemas(child)


def test_its_keywords_are_draft_7s_too_which_yaml_language_server_validates_with() -> None:
    annotations = {"$schema", "$comment", "title", "description", "default", "then", "else"}
    draft7 = set(Draft7Validator.VALIDATORS) | annotations
    used = {keyword for node in subschemas(config_schema()) for keyword in node}
    assert used - draft7 == {"$defs"}, "reached by JSON pointer, which draft 7 resolves too"


def test_an_options_alternatives_carry_no_description_of_their_own() -> None:
    """An editor shows on hover the description of the alternative a value matched: the
    option's own must be the only one there is."""
    schema = config_schema()
    for node in subschemas(schema):
        for alternative in node.get("anyOf", []):
            reference = alternative.get("$ref", "").removeprefix("#/$defs/")
            value = schema["$defs"][reference] if reference else alternative
            if value.get("type") != "object":  # a section's description is its own
                assert "description" not in value, alternative


def options() -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(dotted name, schema, required) of every option, at any depth."""
    schema = config_schema()
    models = {"": schema, **{f"{name}.": model for name, model in schema["$defs"].items()}}
    for prefix, model in models.items():
        for name, option in model.get("properties", {}).items():
            yield f"{prefix}{name}", option, name in model.get("required", [])


def test_every_option_has_a_description_and_every_optional_one_its_default() -> None:
    described = [name for name, option, _ in options() if option.get("description")]
    assert len(described) == len(list(options())) > 100
    assert [
        name for name, option, required in options() if not required and "default" not in option
    ] == []


def test_an_editor_is_told_each_options_list_of_values_bounds_and_default() -> None:
    schema = config_schema()
    tls = schema["$defs"]["TlsConfig"]["properties"]["ca_mode"]
    assert {"enum": ["add", "only"], "type": "string"} in tls["anyOf"]
    assert tls["default"] == "add"
    port = schema["$defs"]["ListenConfig"]["properties"]["port"]
    assert {"maximum": 65535, "minimum": 0, "type": "integer"} in port["anyOf"]
    assert port["default"] == 8080
    assert "Port to listen on" in port["description"]
    endpoints = schema["$defs"]["RetriesConfig"]["properties"]["endpoints"]
    assert DETAIL in endpoints["propertyNames"]["enum"]


# --- the configs of this repository --------------------------------------------------------------


def gateway_configs() -> dict[str, str]:
    """Every gateway config in the repository, by where it is: files whose top level holds
    `apps`, and each such document in a ConfigMap's data."""
    found = {}
    for path in sorted(ROOT.rglob("*.y*ml")):
        relative = path.relative_to(ROOT)
        if relative.parts[0].startswith(".") or relative.parts[0] in ("build", "node_modules"):
            continue
        text = path.read_text(encoding="utf-8")
        for index, document in enumerate(yaml.safe_load_all(text)):
            if isinstance(document, dict) and "apps" in document:
                found[str(relative)] = text
            elif isinstance(document, dict) and document.get("kind") == "ConfigMap":
                for key, value in (document.get("data") or {}).items():
                    embedded = yaml.safe_load(value) if key.endswith((".yaml", ".yml")) else None
                    if isinstance(embedded, dict) and "apps" in embedded:
                        found[f"{relative}#{index}:{key}"] = value
    return found


def test_every_config_in_the_repository_matches_the_shipped_schema(tmp_path: Path) -> None:
    configs = gateway_configs()
    assert {
        "gateway.yaml",
        "deploy/docker/gateway.yaml",
        "deploy/kubernetes/shared/configmap.yaml#0:gateway.yaml",
    } <= set(configs), "the configs this test is known to check were not all found"
    assert any(name.startswith("deploy/kubernetes/sidecar/") for name in configs)
    files = []
    for index, (name, text) in enumerate(sorted(configs.items())):
        # An embedded one is checked as a file of its own, named after where it was found.
        file = tmp_path / f"{index}-{name.replace('/', '_').replace('#', '_')}.yaml"
        file.write_text(text, encoding="utf-8")
        files.append(str(file))
    checked = check_jsonschema(SHIPPED, files)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def check_jsonschema(schema: Path, files: list[str]) -> subprocess.CompletedProcess[str]:
    """check-jsonschema, beside this interpreter (.venv/bin/), on `files`."""
    program = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run(
        [str(program), "--schemafile", str(schema), *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_jsonschema_fails_on_a_config_that_stops_matching(tmp_path: Path) -> None:
    broken = tmp_path / "gateway.yaml"
    broken.write_text(BASE + "listen: {host: 127.0.0.1, prot: 8080}\n", encoding="utf-8")
    checked = check_jsonschema(SHIPPED, [str(broken)])
    assert checked.returncode == 1
    assert "prot" in checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("config", "schema"),
    [("gateway.yaml", "docs/gateway.schema.json"), ("deploy/docker/gateway.yaml", None)],
)
def test_the_repositorys_own_configs_point_editors_at_the_shipped_schema(
    config: str, schema: str | None
) -> None:
    first = (ROOT / config).read_text(encoding="utf-8").splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    named = (ROOT / config).parent / first.removeprefix(prefix)
    assert named.resolve() == SHIPPED.resolve()


# --- the schema and the loader agree ---------------------------------------------------------


AGREED = [
    # (id, the lines added to BASE, or a whole document; valid)
    ("the base document", "", True),
    ("a placeholder for a port", "listen: {port: '${PORT:-8080}'}", True),
    ("a placeholder for a word of a list", "cache: {backend: '${BACKEND:-memory}'}", True),
    ("a placeholder for a boolean", "strict_endpoints: ${STRICT:-true}", True),
    ("a placeholder in a list", "trusted_networks: ['${NETWORK:-10.0.0.0/8}']", True),
    ("a number in quotes", "listen: {port: '8080'}", True),
    ("a boolean as YAML 1.1's word", "sandbox: {explain: yes}", True),
    ("a boolean as a word in quotes", "sandbox: {explain: 'Off'}", True),
    ("a boolean as 1", "strict_endpoints: 1", True),
    ("an exponent", "timeouts: {total_s: 1.5e+1}", True),
    ("the modeline's comment", "# yaml-language-server: $schema=x.json", True),
    ("null where an option may be none", "proxy:", True),
    ("proxy from the environment", "proxy: env", True),
    ("a proxy's URL", "proxy: http://user:pw@proxy.internal:3128", True),
    ("a default app among the apps", "default_app: demo", True),
    ("redis with its url", "cache: {backend: redis, url: 'redis://:${PW:-x}@r:6379/0'}", True),
    (
        "redis behind sentinel",
        "cache: {backend: redis, sentinel: {master: neu, nodes: ['s0:26379', '[fd00::1]:26379'], "
        "username: gw, tls: true, ca_file: /ca.pem}, wait_replicas: 2}",
        True,
    ),
    ("a redis cluster", "cache: {backend: redis, cluster: {nodes: ['r0:6379', 'r1:6379']}}", True),
    ("a watch turned off", "secrets: {watch_s: 0}", True),
    ("an endpoint's own retries", f"retries: {{endpoints: {{{DETAIL}: {{attempts: 5}}}}}}", True),
    (
        "a backend readiness requires",
        "cache: {backend: redis, url: redis://r}\nadmin: {ready_requires: [cache]}",
        True,
    ),
    (
        "deliveries signed with the demo's signing secret",
        f"apps: {{demo: {{appid: a, secret_env: S, upstream: sandbox, callbacks: "
        f"{{signing_secret: {DEMO_SIGNING_SECRET}}}}}}}",
        True,
    ),
    (
        "a signing secret inline, and the previous one during a rotation",
        f"apps: {{demo: {{appid: a, secret_env: S, upstream: sandbox, callbacks: "
        f"{{signing_secret: {DEMO_SIGNING_SECRET}, signing_secret_previous_env: W}}}}}}",
        True,
    ),
    ("an unknown key", "listen: {host: 127.0.0.1, prot: 8080}", False),
    (
        "a signing secret that is no whsec_ secret",
        "apps: {demo: {appid: a, secret_env: S, upstream: sandbox, callbacks: "
        "{signing_secret: c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0}}}",
        False,
    ),
    (
        "two sources of the signing secret",
        f"apps: {{demo: {{appid: a, secret_env: S, upstream: sandbox, callbacks: "
        f"{{signing_secret: {DEMO_SIGNING_SECRET}, signing_secret_env: W}}}}}}",
        False,
    ),
    (
        "a previous signing secret without a current one",
        "apps: {demo: {appid: a, secret_env: S, upstream: sandbox, callbacks: "
        "{signing_secret_previous_env: W}}}",
        False,
    ),
    ("a misspelt section", "timeout: {connect_s: 3}", False),
    ("a port out of bounds", "listen: {port: 70000}", False),
    ("a negative timeout", "timeouts: {total_s: -1}", False),
    ("a word for a number", "listen: {port: eighty}", False),
    ("a number in quotes, but not a number", "listen: {port: '80 80'}", False),
    ("a word not in the list", "logging: {format: yaml}", False),
    ("YAML's off where a word is asked", "logging: {format: off}", False),
    ("a mapping where a number is asked", "workers: {n: 2}", False),
    ("a list where a mapping is asked", "listen: [127.0.0.1, 8080]", False),
    (
        "an app name with a space",
        "apps: {my app: {appid: a, secret_env: S, upstream: sandbox}}",
        False,
    ),
    (
        "an upstream that is no URL",
        "apps: {demo: {appid: a, secret_env: S, upstream: sandbx}}",
        False,
    ),
    (
        "an upstream with a query",
        "apps: {demo: {appid: a, secret_env: S, upstream: 'https://p.example/?a=1'}}",
        False,
    ),
    (
        "two secret sources",
        "apps: {demo: {appid: a, secret_env: S, secret: s, upstream: sandbox}}",
        False,
    ),
    ("no secret source", "apps: {demo: {appid: a, upstream: sandbox}}", False),
    ("no token source", "callers: {ops: {apps: [demo], allow: ['GET /neuopenapi/*']}}", False),
    (
        "a route without its method",
        "callers: {ops: {token_env: T, apps: [demo], allow: [/neuopenapi/x]}}",
        False,
    ),
    ("a client certificate without its key", "tls: {client_cert: /c.pem}", False),
    ("ca_mode only without a ca_file", "tls: {ca_mode: only}", False),
    ("redis without its url", "cache: {backend: redis}", False),
    (
        "redis both behind sentinel and a cluster",
        "cache: {backend: redis, sentinel: {master: m, nodes: ['s:1']}, cluster: {nodes: ['r:1']}}",
        False,
    ),
    ("a cluster without backend redis", "cache: {cluster: {nodes: ['r:1']}}", False),
    ("a node that is no host:port", "cache: {backend: redis, cluster: {nodes: ['r']}}", False),
    (
        "two password sources",
        "cache: {backend: redis, cluster: {nodes: ['r:1'], password_env: P, password_file: /p}}",
        False,
    ),
    ("a CA without TLS", "cache: {backend: redis, cluster: {nodes: ['r:1'], ca_file: /c}}", False),
    ("a key prefix with a hash tag", "cache: {key_prefix: 'neu:{a}:'}", False),
    ("a cache url of another scheme", "cache: {url: 'http://r:6379'}", False),
    ("an outbox of another kind", "callbacks: {store: 'postgres://db'}", False),
    (
        "a delivery URL of another scheme",
        "apps: {demo: {appid: a, secret_env: S, upstream: sandbox, callbacks: {deliver_to: 'ftp://x'}}}",
        False,
    ),
    ("a watch more often than 0.1 s", "secrets: {watch_s: 0.05}", False),
    (
        "an endpoint the doc does not have",
        "retries: {endpoints: {/neuopenapi/nope: {attempts: 2}}}",
        False,
    ),
    ("a backend readiness cannot require", "admin: {ready_requires: [database]}", False),
    ("the sandbox off loopback", "sandbox: {listen: {host: 0.0.0.0}}", False),
    (
        "validation neither doc nor off",
        "apps: {demo: {appid: a, secret_env: S, upstream: sandbox, validation: strict}}",
        False,
    ),
    ("no apps", "apps: {}", False),
    ("a boolean as 2", "strict_endpoints: 2", False),
]


def document_of(lines: str) -> str:
    """BASE with `lines`, each top-level key of which replaces BASE's own."""
    if lines.startswith("#"):
        return lines + "\n" + BASE
    added = yaml.safe_load(lines) or {}
    base = yaml.safe_load(BASE)
    if any(key in base for key in added):
        kept = "".join(
            yaml.safe_dump({key: value}, sort_keys=False)
            for key, value in base.items()
            if key not in added
        )
        return kept + lines + "\n"
    return BASE + lines + "\n"


@pytest.mark.parametrize(
    ("lines", "valid"),
    [(lines, valid) for _, lines, valid in AGREED],
    ids=[name for name, _, _ in AGREED],
)
def test_the_schema_and_the_loader_agree(lines: str, valid: bool) -> None:
    text = document_of(lines)
    assert (loader_accepts(text), schema_accepts(text)) == (valid, valid)


STRICTER = [
    # What the loader takes by accident and the schema refuses on purpose (json_schema.py).
    ("a boolean for a number", "listen: {port: true}"),
    (
        "a string YAML 1.2 reads as a number",
        "apps: {demo: {appid: 1e3, secret_env: S, upstream: sandbox}}",
    ),
    ("a base-60 number of YAML 1.1", "listen:\n  port: 1:30"),
]


@pytest.mark.parametrize(
    "lines", [lines for _, lines in STRICTER], ids=[name for name, _ in STRICTER]
)
def test_the_schema_is_stricter_than_the_loader_only_on_purpose(lines: str) -> None:
    text = document_of(lines)
    assert (loader_accepts(text), schema_accepts(text)) == (True, False)


# --- generated documents -----------------------------------------------------------------------


def unwrapped(annotation: Any) -> Any:
    """`annotation` without Annotated's metadata and without None."""
    if get_origin(annotation) is Annotated:
        return unwrapped(get_args(annotation)[0])
    if get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        return unwrapped(members[0]) if len(members) == 1 else annotation
    return annotation


def scalar_options(
    model: type[BaseModel] = FileConfig, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, type) of every option that takes one value, in every section, at any depth."""
    for name, field in model.model_fields.items():
        kind = unwrapped(field.annotation)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from scalar_options(kind, (*prefix, name))
        elif get_origin(kind) is dict:
            yield from scalar_options(unwrapped(get_args(kind)[1]), (*prefix, name, NAMES[name]))
        elif get_origin(kind) is not list:
            yield (*prefix, name), kind


SCALARS = sorted(scalar_options())
# Checked against limits.max_connections, which JSON Schema cannot compare a value with.
ACROSS = {("limits", "max_in_flight_per_caller"), ("callers", "ops", "max_in_flight")}
TYPED = [
    (path, kind)
    for path, kind in SCALARS
    if (kind in (int, float, bool) or get_origin(kind) is Literal) and path not in ACROSS
]


def test_the_generated_documents_reach_every_option() -> None:
    assert len(SCALARS) > 80
    assert (("apps", "demo", "validation"), Literal["doc", "off"]) in SCALARS
    assert (("retries", "endpoints", DETAIL, "attempts"), int) in SCALARS


def scalar_texts() -> st.SearchStrategy[str]:
    """A value as it may be written in the file: plain, quoted, or a placeholder."""
    word = st.text(st.sampled_from("abcxyzONY019._-:/ "), max_size=12)
    return st.one_of(
        st.integers(-(10**7), 10**7).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(str),
        st.sampled_from(
            [
                "yes",
                "No",
                "ON",
                "off",
                "true",
                "False",
                "y",
                "n",
                "~",
                "null",
                "0x1f",
                "1_000",
                "1e3",
                ".5",
                "+5",
                "017",
                "0o17",
                "'8080'",
                "' 12 '",
                "'1.5e3'",
                "'inf'",
                "'yes'",
                "'t'",
                "doc",
                "sandbox",
                "env",
                "direct",
                "redis",
                "memory",
                "json",
                "add",
                "only",
                "'${V}'",
                "'${UNSET:-12}'",
                "'${UNSET:-yes}'",
                "http://x",
                "sqlite:///tmp/o.db",
            ]
        ),
        word.map(json.dumps),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option=st.sampled_from(SCALARS), scalar=scalar_texts(), variable=scalar_texts())
@example(option=(("listen", "port"), int), scalar="'${V}'", variable="8080")
@example(option=(("sandbox", "explain"), bool), scalar="Off", variable="")
@example(option=(("apps", "demo", "validation"), str), scalar="no", variable="")
def test_the_schema_takes_every_value_the_loader_takes(
    option: tuple[tuple[str, ...], Any], scalar: str, variable: str
) -> None:
    """No false alarm in an editor: a file the gateway takes, the schema takes.

    Only for values both YAML readers read alike, but for YAML 1.1's boolean words, which the
    schema takes as strings; what else they read apart the schema refuses on purpose."""
    path, kind = option
    text = with_option(path, scalar)
    as_loader, as_editor = yaml.safe_load(scalar), EDITOR_YAML.load(scalar)
    read_alike = as_loader == as_editor and type(as_loader) is type(as_editor)
    assume(read_alike or (isinstance(as_loader, bool) and isinstance(as_editor, str)))
    if isinstance(as_loader, bool) and kind in (int, float):
        assert not schema_accepts(text), "a boolean for a number is refused on purpose"
        return
    environ = {**ENVIRON, "V": str(yaml.safe_load(variable))}
    if loader_accepts(text, environ):
        assert schema_accepts(text), VALIDATOR.iter_errors(EDITOR_YAML.load(text))


def typed_values() -> st.SearchStrategy[Any]:
    """Values of every JSON type, near the bounds the options have."""
    return st.one_of(
        st.integers(-100, 70_000),
        st.integers(-(10**7), 10**7),
        st.floats(-1e6, 1e6, allow_nan=False),
        st.sampled_from(
            [
                0,
                1,
                0.05,
                0.1,
                0.5,
                1.0,
                64,
                65,
                65535,
                65536,
                1 << 30,
                (1 << 30) + 1,
                86400.5,
                -86400,
                3600,
                3600.5,
            ]
        ),
        st.booleans(),
        st.none(),
        st.sampled_from(["", "x", "doc", "json", "text", "add", "only", "memory", "redis"]),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option=st.sampled_from(TYPED), value=typed_values())
def test_the_schema_and_the_loader_agree_on_every_typed_value(
    option: tuple[tuple[str, ...], Any], value: Any
) -> None:
    """Numbers, booleans and lists of words: their types, bounds and words agree exactly."""
    path, kind = option
    text = with_option(path, yaml.safe_dump(value).removesuffix("\n...\n").rstrip("\n"))
    if isinstance(value, bool) and kind in (int, float):
        assert not schema_accepts(text), "a boolean for a number is refused on purpose"
    else:
        assert schema_accepts(text) == loader_accepts(text), VALIDATOR.iter_errors(
            EDITOR_YAML.load(text)
        )
