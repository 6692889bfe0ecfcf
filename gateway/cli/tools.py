"""The commands that read a config and say something of it, no gateway running: check-config
(with --probe, each upstream called), init, sign and verify."""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import urlencode

from gateway.cli.config_file import (
    EXIT_CONFIG,
    EXIT_INVALID,
    EXIT_OK,
    load_or_report,
    report_problems,
)
from gateway.cli.probe import probe_upstreams
from gateway.cli.schema_file import SCHEMA_FILE, write_schema
from gateway.cli.starter import FILES, STARTER_CONFIG
from gateway.config.model import App, Config
from gateway.config.placeholders import placeholders_left
from gateway.config.schema import DEFAULT_CONFIG_PATH, without_credentials
from gateway.core import signing
from gateway.core.clock import SystemClock
from gateway.core.params import caller_fields, is_secret_name
from gateway.runtime.resources import tls_setup_problems


def check_config(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    # Valid, but not yet the operator's own: init's placeholders would fail every call.
    problems = placeholders_left(config) + tls_setup_problems(config)
    if problems:
        report_problems(args.config, problems)
        return EXIT_CONFIG
    print(f"{args.config}: ok")
    for line in listeners(config):
        print(f"  {line}")
    sandbox = config.sandbox.listen
    for app in config.apps.values():
        default = " (default)" if app.name == config.default_app else ""
        upstream = app.upstream
        if app.uses_sandbox:
            upstream = f"sandbox (embedded, http://{sandbox.host}:{sandbox.port})"
        # Only when off: the doc's checks are the default, and worth naming when they are not.
        checks = ", validation off" if app.validation == "off" else ""
        print(f"  app {app.name}{default}: appid {app.appid}, upstream {upstream}{checks}")
    for line in summary(config):
        print(f"  {line}")
    if args.probe:
        lines, all_passed = asyncio.run(probe_upstreams(config))
        for line in lines:
            print(f"  probe: {line}")
        # An upstream that did not answer, or a sign it refused (a wrong secret): 1, as a
        # failed check; 2 is kept for a config that cannot be read at all.
        if not all_passed:
            return EXIT_INVALID
    return EXIT_OK


def listeners(config: Config) -> list[str]:
    """Every address the gateway will listen on, by its key, and how many processes."""
    lines = [f"listen: {config.listen.host}:{config.listen.port}"]
    admin = config.admin.listen
    lines.append(
        "admin.listen: none (/healthz, /readyz and /metrics are served on listen)"
        if admin is None
        else f"admin.listen: {admin.host}:{admin.port} (/healthz, /readyz, /metrics)"
    )
    callbacks = config.callbacks.listen
    lines.append(
        "callbacks.listen: none (callbacks off)"
        if callbacks is None
        else f"callbacks.listen: {callbacks.host}:{callbacks.port}"
    )
    sandbox = config.sandbox.listen
    users = ", ".join(app.name for app in config.sandbox_apps)
    lines.append(
        f"sandbox.listen: {sandbox.host}:{sandbox.port} (the embedded sandbox, for {users})"
        if users
        else "sandbox.listen: none (no app has upstream: sandbox)"
    )
    lines.append(f"workers: {config.workers}")
    lines.append(f"pid_file: {config.pid_file or 'none'}")
    return lines


def summary(config: Config) -> list[str]:
    """Callers, callbacks and cache as check-config shows them: names and places, no secrets."""
    lines = [
        f"caller {caller.name}: apps {', '.join(sorted(caller.apps))}; "
        f"allow {', '.join(map(str, caller.routes))}"
        + ("" if caller.rate is None else f"; rate limit {caller.rate} (each process)")
        for caller in config.callers.values()
    ] or ["callers: none (no token asked for)"]
    if config.trusted_networks:
        lines.append(f"trusted networks: {', '.join(map(str, config.trusted_networks))}")
    listen = config.callbacks.listen
    if listen is None:
        lines.append("callbacks: off (no callbacks.listen)")
    else:
        lines.append(f"callbacks: store {config.callbacks.store}")
        lines += [
            f"  app {app.name}: deliver_to "
            + (
                without_credentials(app.callbacks.deliver_to)
                if app.callbacks.deliver_to
                else "none, so its callbacks end up dead in the outbox"
            )
            + ("" if app.callbacks.verify_sign else "; verify_sign off")
            + _signing(app)
            for app in config.apps.values()
        ]
    cache, redis = config.cache, config.redis
    if redis is not None:
        waits = f", writes wait for {redis.wait_replicas} replica(s)" if redis.wait_replicas else ""
        lines.append(f"cache: {redis.where}, keys under {cache.key_prefix!r}{waits}")
    else:
        lines.append(f"cache: memory, up to {cache.max_entries} logins")
    return lines


def _signing(app: App) -> str:
    if not app.signing_secrets:
        return "; deliveries unsigned (no callbacks.signing_secret_file)"
    if len(app.signing_secrets) == 1:
        return "; deliveries signed (Standard Webhooks)"
    current, previous = app.signing_secrets
    if current.matches(previous.reveal()):
        return "; deliveries signed twice with one secret (the previous is the current one)"
    return "; deliveries signed with the new and the previous secret (a rotation)"


def init(args: argparse.Namespace) -> int:
    path = args.dir / DEFAULT_CONFIG_PATH
    schema = args.dir / SCHEMA_FILE
    try:
        args.dir.mkdir(parents=True, exist_ok=True)
        # "x" refuses a file that is there, even one made a moment ago.
        with path.open("w" if args.force else "x", encoding="utf-8") as file:
            file.write(STARTER_CONFIG)
    except FileExistsError:
        print(f"neu-gateway: {path} exists; --force replaces it", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"neu-gateway: cannot write {path} ({exc.strerror})", file=sys.stderr)
        return EXIT_CONFIG
    try:
        # The schema of this version, beside the config whose first line names it: an editor
        # completes and checks the file offline, with the options this gateway knows.
        schema_written = write_schema(schema)
    except OSError as exc:
        print(f"neu-gateway: cannot write {schema} ({exc.strerror})", file=sys.stderr)
        return EXIT_CONFIG
    width = max(len(name) for name, _ in FILES)
    print(f"wrote {path}")
    print(
        f"{'wrote' if schema_written else 'kept'} {schema} (its JSON Schema: editors with "
        "yaml-language-server complete and check the config from it)"
    )
    print("next:")
    print("  1. put your app's appid and the platform's base URL in it (apps.myapp)")
    print("  2. create the files it reads, each holding one value, readable by the gateway only")
    print("     (mode 0600: umask 077 before writing, or chmod 600 after):")
    for name, meaning in FILES:
        print(f"       {name:{width}}  {meaning}")
    print(f"  3. neu-gateway check-config -c {path}")
    print(f"  4. neu-gateway serve -c {path}")
    return EXIT_OK


def params_for(args: argparse.Namespace) -> tuple[App, dict[str, str]] | None:
    config = load_or_report(args.config)
    if config is None:
        return None
    name: str | None = args.app or config.default_app
    if name is None or name not in config.apps:
        known = ", ".join(config.apps)
        print(f"neu-gateway: choose an app with --app ({known})", file=sys.stderr)
        return None
    app = config.apps[name]
    pairs = []
    for item in args.params:
        key, eq, value = item.partition("=")
        if not eq or not key:
            print(f"neu-gateway: {item!r} is not key=value", file=sys.stderr)
            return None
        pairs.append((key, value))
    given = dict(pairs)
    if given.get("appid", app.appid) != app.appid:
        print(f"note: appid replaced by the app's own, {app.appid}", file=sys.stderr)
    fields = caller_fields((k, v) for k, v in pairs if not is_secret_name(k))
    fields["appid"] = app.appid
    fields["timestamp"] = given.get("timestamp") or str(SystemClock().now_ms())
    if "sign" in given:
        fields["sign"] = given["sign"]
    return app, fields


def print_canonical(app: App, fields: dict[str, str]) -> None:
    print(f"app:       {app.name} (appid {app.appid})")
    print(f"canonical: {signing.canonical_string(fields, signing.SECRET_MASK)}")


def sign(args: argparse.Namespace) -> int:
    found = params_for(args)
    if found is None:
        return EXIT_CONFIG
    app, fields = found
    fields.pop("sign", None)
    fields["sign"] = signing.sign(fields, app.secret.reveal())
    print_canonical(app, fields)
    print(f"sign:      {fields['sign']}")
    print(f"form:      {urlencode(fields)}")
    return EXIT_OK


def verify(args: argparse.Namespace) -> int:
    found = params_for(args)
    if found is None:
        return EXIT_CONFIG
    app, fields = found
    print_canonical(app, fields)
    if "sign" not in fields:
        print("result:    no sign=... given", file=sys.stderr)
        return EXIT_INVALID
    if signing.verify(fields, app.secret.reveal()):
        print("result:    valid")
        return EXIT_OK
    print(f"result:    INVALID, expected sign {signing.sign(fields, app.secret.reveal())}")
    return EXIT_INVALID
