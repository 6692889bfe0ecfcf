"""gateway.yaml into a frozen, validated Config; secrets resolved from env vars or files.

Every problem is reported as `dotted.field.path: reason`, all at once, and never with a
secret's value. `${VAR}` (or `${VAR:-default}`) in any string value is replaced from the
environment before validation.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from gateway.config.credentials import (
    PREVIOUS_SIGNING_SECRET,
    SIGNING_SECRET,
    read_credential,
    signing_secrets,
)
from gateway.config.errors import ConfigError
from gateway.config.model import App, Config, CredentialSource, RedisTarget, redis_nodes
from gateway.config.schema import (
    MIN_CALLER_TOKEN_LENGTH,
    SQLITE_STORE,
    CacheConfig,
    FileConfig,
    ListenConfig,
    above_connections,
    resolved_proxy,
)
from gateway.core.access import Caller, Route
from gateway.core.redaction import escape_controls
from gateway.core.secrets import Secret

log = logging.getLogger("neu_gateway.config")

# Values in the config once YAML's aliases are expanded; a real one has a few hundred.
MAX_CONFIG_VALUES = 100_000
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class DuplicateKey(yaml.YAMLError):
    """A mapping in gateway.yaml names the same key twice."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml's SafeLoader, refusing a key given twice in one mapping, at any depth.

    YAML requires keys to be unique, yet PyYAML keeps the last of two silently: a second
    `apps:` block would drop every app of the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_lines: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges, and may be overridden on purpose
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = first_lines.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader itself refuses it
            if first is not None:
                raise DuplicateKey(
                    f"line {line}: key {key!r} is given twice in one mapping (first at line "
                    f"{first}); YAML would keep only the last, so merge them into one"
                )
            first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


def load(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, substitute, validate and resolve gateway.yaml, or raise ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        # Never the exception itself: it quotes the file's bytes, secrets and all.
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    try:
        document = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except DuplicateKey as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: {_yaml_problem(exc)}"]) from None
    return from_mapping(document, os.environ if environ is None else environ)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's reason, where it found it and what it was reading. Never str(error): that
    quotes the file's line, which may hold a secret; its `problem` and `context` name tokens
    (`expected ',' or '}', but got '<scalar>'`), not values."""
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    text = "not valid YAML"
    if mark is not None:
        text += f" at line {mark.line + 1}, column {mark.column + 1}"
    if problem:
        text += f": {escape_controls(problem)}"
    context = getattr(error, "context", None)
    context_mark = getattr(error, "context_mark", None)
    if context:
        started = (
            f" from line {context_mark.line + 1}, column {context_mark.column + 1}"
            if context_mark is not None
            else ""
        )
        text += f" ({escape_controls(context)}{started})"
    return text


def from_mapping(document: Any, environ: Mapping[str, str]) -> Config:
    if not isinstance(document, dict):
        raise ConfigError(["(top level): must be a mapping with at least `apps`"])
    problems: list[str] = []
    _refuse_expansion(document)
    document = _substitute(document, environ, "", problems)
    if problems:
        raise ConfigError(problems)
    try:
        parsed = FileConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError([_describe(error) for error in exc.errors()]) from None
    apps = {}
    for name, app in parsed.apps.items():
        secret = read_credential(
            f"apps.{name}", "secret", app.secret_env, app.secret_file, app.secret, environ, problems
        )
        signing = signing_secrets(f"apps.{name}", app.callbacks, environ, problems)
        if secret is not None:
            apps[name] = App(
                name=name,
                appid=app.appid,
                secret=secret,
                upstream=app.upstream,
                # Kept as a Secret in signing_secrets: as parsed it would print with the app.
                callbacks=app.callbacks.model_copy(update={"signing_secret": None}),
                tls=app.tls or parsed.tls,
                proxy=resolved_proxy(app.proxy or parsed.proxy),
                validation=app.validation,
                signing_secrets=signing,
            )
    default_app = parsed.default_app or (next(iter(parsed.apps)) if len(parsed.apps) == 1 else None)
    callers = _callers(parsed, environ, problems)
    exposed = open_to_anyone(parsed.listen, bool(parsed.callers), parsed.insecure_allow_anonymous)
    if exposed is not None:
        problems.append(f"listen.host: {exposed}")
    callbacks = parsed.callbacks
    if callbacks.store is None:
        store = "redis" if parsed.cache.backend == "redis" else SQLITE_STORE
        callbacks = callbacks.model_copy(update={"store": store})
    if callbacks.store == "redis" and parsed.cache.backend != "redis":
        problems.append("callbacks.store: redis needs cache.backend: redis (its Redis is used)")
    redis = _redis_target(parsed.cache, environ, problems)
    for name, caller in parsed.callers.items():
        if caller.rate_limit and caller.rate_limit.scope == "shared" and redis is None:
            problems.append(
                f"callers.{name}.rate_limit.scope: shared needs cache.backend: redis (the "
                "count is kept there, for every process and replica)"
            )
    if problems:
        raise ConfigError(problems)
    return Config(
        listen=parsed.listen,
        apps=apps,
        default_app=default_app,
        timeouts=parsed.timeouts,
        limits=parsed.limits,
        cache=parsed.cache,
        sandbox=parsed.sandbox,
        callbacks=callbacks,
        callers=callers,
        trusted_networks=tuple(parsed.trusted_networks),
        insecure_allow_anonymous=parsed.insecure_allow_anonymous,
        strict_endpoints=parsed.strict_endpoints,
        admin=parsed.admin,
        logging=parsed.logging,
        shutdown=parsed.shutdown,
        pid_file=parsed.pid_file,
        pool=parsed.pool,
        retries=parsed.retries,
        breaker=parsed.breaker,
        clock=parsed.clock,
        workers=parsed.workers,
        secrets=parsed.secrets,
        redis=redis,
        credential_sources=_credential_sources(parsed),
    )


def _redis_target(
    cache: CacheConfig, environ: Mapping[str, str], problems: list[str]
) -> RedisTarget | None:
    """The Redis of cache.backend redis, its passwords read (None: the memory cache)."""
    one_server = RedisTarget(
        form="url",
        url=cache.url,
        prefix=cache.key_prefix,
        timeout_s=cache.timeout_s,
        wait_replicas=cache.replicas_to_wait_for,
        wait_timeout_s=cache.wait_timeout_s,
    )
    if cache.redis_form == "url":
        return one_server
    nodes = cache.sentinel or cache.cluster
    if cache.redis_form is None or nodes is None:
        return None
    where = f"cache.{cache.redis_form}"

    def password(what: str, env: str | None, file: Path | None) -> Secret | None:
        if env is None and file is None:
            return None
        return read_credential(where, what, env, file, None, environ, problems)

    sentinel_password = None
    if cache.sentinel is not None:
        sentinel_password = password(
            "sentinel_password",
            cache.sentinel.sentinel_password_env,
            cache.sentinel.sentinel_password_file,
        )
    return dataclasses.replace(
        one_server,
        form=cache.redis_form,
        url=None,
        nodes=redis_nodes(nodes.nodes),
        master=cache.sentinel.master if cache.sentinel is not None else None,
        username=nodes.username,
        password=password("password", nodes.password_env, nodes.password_file),
        sentinel_password=sentinel_password,
        tls=nodes.tls,
        ca_file=nodes.ca_file,
    )


def _credential_sources(parsed: FileConfig) -> tuple[CredentialSource, ...]:
    apps = [
        CredentialSource(
            owner=f"apps.{name}", what="secret", env=app.secret_env, file=app.secret_file
        )
        for name, app in parsed.apps.items()
    ]
    signing = [
        CredentialSource(owner=f"apps.{name}", what=what, env=env, file=file)
        for name, app in parsed.apps.items()
        for what, env, file in (
            (SIGNING_SECRET, app.callbacks.signing_secret_env, app.callbacks.signing_secret_file),
            (
                PREVIOUS_SIGNING_SECRET,
                app.callbacks.signing_secret_previous_env,
                app.callbacks.signing_secret_previous_file,
            ),
        )
        if env is not None or file is not None
    ]
    callers = [
        CredentialSource(
            owner=f"callers.{name}", what="token", env=caller.token_env, file=caller.token_file
        )
        for name, caller in parsed.callers.items()
    ]
    return (*apps, *signing, *callers)


def open_to_anyone(
    listen: ListenConfig, has_callers: bool, insecure_allow_anonymous: bool
) -> str | None:
    """Why a listener at `listen` would let anyone act as the apps (no caller is asked for a
    token off loopback), or None; at load, and for `serve --listen`."""
    if listen.is_loopback or has_callers or insecure_allow_anonymous:
        return None
    return (
        f"{listen.host} is not a loopback address and no callers are configured, so anyone "
        "who reaches it could act as your apps; configure callers, listen on 127.0.0.1, or "
        "set insecure_allow_anonymous: true if something in front of the gateway "
        "authenticates callers"
    )


def caller_with_token(
    callers: Mapping[str, Caller], token: Secret, besides: str | None = None
) -> str | None:
    """The caller other than `besides` whose token is `token`: each caller must have its own,
    or a request could not say who sent it."""
    value = token.reveal()
    return next(
        (
            name
            for name, caller in callers.items()
            if name != besides and caller.token.matches(value)
        ),
        None,
    )


def _callers(
    parsed: FileConfig, environ: Mapping[str, str], problems: list[str]
) -> dict[str, Caller]:
    callers: dict[str, Caller] = {}
    for name, caller in parsed.callers.items():
        where = f"callers.{name}"
        unknown = [app for app in caller.apps if app not in parsed.apps]
        if unknown:
            problems.append(
                f"{where}.apps: unknown app {', '.join(map(repr, unknown))} "
                f"(configured: {', '.join(parsed.apps)})"
            )
        connections = parsed.limits.max_connections
        if caller.max_in_flight is not None and caller.max_in_flight > connections:
            problems.append(
                f"{where}.max_in_flight: {above_connections(caller.max_in_flight, connections)}"
            )
        token = read_credential(
            where, "token", caller.token_env, caller.token_file, None, environ, problems
        )
        if token is None:
            continue
        if len(token.reveal()) < MIN_CALLER_TOKEN_LENGTH:
            source = "token_env" if caller.token_env else "token_file"
            problems.append(
                f"{where}.{source}: the token is shorter than {MIN_CALLER_TOKEN_LENGTH} "
                "characters; use a long random one (e.g. openssl rand -hex 32)"
            )
            continue
        twin = caller_with_token(callers, token)
        if twin is not None:
            problems.append(f"{where}: has the same token as callers.{twin}; give each its own")
            continue
        routes = tuple(Route.parse(item) for item in caller.allow)
        rate = None if caller.rate_limit is None else caller.rate_limit.rate()
        callers[name] = Caller(
            name, token, frozenset(caller.apps), routes, rate, caller.max_in_flight
        )
    return callers


def _refuse_expansion(document: Any) -> None:
    """A mapping or list named by an alias is one object, however many times it is named;
    the walks after this one (substitution, validation) would expand each naming into a copy.
    Nine aliases a line, eight lines deep, are 43 million values: minutes of CPU and gigabytes
    in a reload's thread, which a stop then waits on. So values are counted, as they would be
    expanded, up to a bound no real config comes near."""
    left = MAX_CONFIG_VALUES
    pending = [document]
    while pending:
        node = pending.pop()
        left -= 1
        if left < 0:
            raise ConfigError(
                [
                    f"(top level): more than {MAX_CONFIG_VALUES} values once its aliases "
                    "(*name) are expanded: name a block by alias fewer times"
                ]
            )
        if isinstance(node, dict):
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def _substitute(node: Any, environ: Mapping[str, str], where: str, problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {
            key: _substitute(value, environ, f"{where}.{key}" if where else str(key), problems)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            _substitute(item, environ, f"{where}[{index}]", problems)
            for index, item in enumerate(node)
        ]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append(f"{where}: environment variable {name} is not set")
        return ""

    return _ENV_REFERENCE.sub(replace, node)


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown option" + _did_you_mean(tuple(error["loc"]))
    elif error["type"] == "missing":
        message = "required"
    elif isinstance(error.get("input"), bool):
        # Only a bool field takes a boolean, and it never fails on one: this value was a word
        # YAML 1.1 turns into one (`format: off`), so say so, or the message puzzles.
        message += (
            " (YAML reads an unquoted yes, no, on, off, true or false as the boolean "
            f"{str(error['input']).lower()}; put the value in quotes)"
        )
    return f"{location}: {message}"


def _did_you_mean(location: tuple[str | int, ...]) -> str:
    """A close allowed key of the section holding the unknown one, or the page to check."""
    section: Any = FileConfig
    for part in location[:-1]:
        section = _member(section, part)
    allowed = _keys_of(section)
    close = difflib.get_close_matches(str(location[-1]), allowed, n=1)
    if close:
        return f"; did you mean `{close[0]}`?"
    return " (check the spelling against the configuration reference, docs/configuration.md)"


def _member(annotation: Any, part: str | int) -> Any:
    """The type of what `part` names inside a value of type `annotation` (a model's field, a
    mapping's value, a list's item), or None."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _member(get_args(annotation)[0], part)
    if origin in (Union, UnionType):
        members = (_member(arg, part) for arg in get_args(annotation))
        return next((member for member in members if member is not None), None)
    if origin is dict:
        return get_args(annotation)[1]
    if origin is list:
        return get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return None if field is None else field.annotation
    return None


def _keys_of(annotation: Any) -> list[str]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _keys_of(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return [key for arg in get_args(annotation) for key in _keys_of(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []
