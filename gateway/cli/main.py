"""neu-gateway, the command line. Its commands, each in the module that runs it:

    serve             run the gateway                                      cli/serve.py
    sandbox           run the platform emulator alone                      cli/serve.py
    reload            make the running gateway re-read its config          cli/ops.py
    callbacks list    the pending and dead deliveries in the outbox        cli/ops.py
    callbacks replay  send one delivery again                              cli/ops.py
    callbacks verify  check a saved delivery's signature with a secret     cli/deliveries.py
    check-config      validate gateway.yaml (--probe: call each upstream)  cli/tools.py
    init              write a commented gateway.yaml to start from         cli/tools.py
    schema            print the JSON Schema of gateway.yaml                cli/schema_file.py
    openapi           print the OpenAPI description of the gateway's API   cli/openapi_doc.py
    sign              the canonical string and the sign of some params     cli/tools.py
    verify            check the sign among some params                     cli/tools.py

This module holds the parser and hands each command its arguments; a command returns its exit
code (cli/config_file.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway import __version__, logs
from gateway.cli import deliveries, openapi_doc, ops, output, schema_file, serve, tools
from gateway.cli.config_file import EXIT_INVALID
from gateway.config.peek import log_format_named
from gateway.config.schema import DEFAULT_CONFIG_PATH
from gateway.core.secrets import DEMO_APPID, DEMO_SECRET
from gateway.runtime import signals

log = logs.logger("neu_gateway")
# What a shell reports for a command its reader stopped reading: 128 + SIGPIPE.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    # Until serve installs its handler, a reload signal must not end the process (and the
    # workers, which inherit this, start the same way).
    signals.ignore_reloads()
    parser = parser_of_commands()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    if command is serve.serve:
        return serve_in_log_format(args)
    logs.configure(args.log_level, args.log_format)
    try:
        return command(args)
    except BrokenPipeError:
        # `neu-gateway openapi | head`: the reader left. Said as a shell command's SIGPIPE,
        # not as a traceback; stdout goes nowhere so the interpreter's flush at exit is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def serve_in_log_format(args: argparse.Namespace) -> int:
    """`serve`, every line it prints in the format of its logs: the config's
    `logging.format` as far as the file can be read, even when it is not valid."""
    logs.configure(args.log_level, args.log_format or log_format_named(args.config))
    with output.in_log_format():
        try:
            return serve.serve(args)
        except Exception:
            # Logged rather than left to the interpreter, whose traceback would be plain
            # text; the exit status is the interpreter's own for an uncaught exception.
            log.exception("neu-gateway stopped by an unexpected error")
            return EXIT_INVALID


def parser_of_commands() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neu-gateway",
        description="Signing egress gateway for the SuperApp OpenAPI.",
    )
    parser.add_argument("--version", action="version", version=f"neu-gateway {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "text"],
        help="log format (default: logging.format, else json unless stderr is a terminal)",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serving = commands.add_parser("serve", help="run the gateway", description="Run the gateway.")
    _config_option(serving)
    serving.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="N processes on the same ports (default: workers in the config, else 1); "
        "more than 1 needs cache.backend: redis",
    )
    serving.add_argument(
        "--listen",
        type=serve.listen_address,
        metavar="HOST:PORT",
        help="listen here instead of the config's listen.host and listen.port (this run "
        "only, reloads included); e.g. 127.0.0.1:9000, [::1]:8080, 127.0.0.1:0 for any port",
    )
    serving.set_defaults(command=serve.serve)

    reloading = commands.add_parser(
        "reload",
        help="make the running gateway re-read its config",
        description=(
            "Validate the config, then send SIGHUP to the running gateway: the process in "
            "the config's pid_file, or --pid. It swaps the new config in, or keeps the old "
            "one and logs why."
        ),
    )
    _config_option(reloading)
    reloading.add_argument("--pid", type=int, help="the gateway's process id (default: pid_file)")
    reloading.set_defaults(command=ops.reload)

    check = commands.add_parser(
        "check-config",
        help="validate gateway.yaml and exit",
        description="Validate the config (and that every secret can be read); exit 2 if not.",
    )
    _config_option(check)
    check.add_argument(
        "--probe",
        action="store_true",
        help="also call each app's upstream: reachable, TLS, proxy, its clock's offset, and "
        "one signed call that proves its secret; exit 1 if any fails",
    )
    check.set_defaults(command=tools.check_config)

    init = commands.add_parser(
        "init",
        help="write a commented gateway.yaml to start from",
        description=(
            "Write a commented gateway.yaml for a real app into DIR: its secret and a caller's "
            "token from environment variables, the platform's URL to fill in, callbacks "
            "commented out. An existing file is left alone unless --force."
        ),
    )
    init.add_argument(
        "dir", nargs="?", type=Path, default=Path(), metavar="DIR", help="default: here"
    )
    init.add_argument("--force", action="store_true", help="replace an existing gateway.yaml")
    init.set_defaults(command=tools.init)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of gateway.yaml",
        description=(
            "Print the JSON Schema (draft 2020-12) of gateway.yaml, from which editors complete "
            "and check the file: neu-gateway schema > gateway.schema.json"
        ),
    )
    schema.set_defaults(command=schema_file.print_schema)

    openapi = commands.add_parser(
        "openapi",
        help="print the OpenAPI description of the gateway's API",
        description=(
            "Print the OpenAPI 3.1 description of what internal services call, as "
            "GET /openapi.json serves it: neu-gateway openapi > openapi.json"
        ),
    )
    openapi.add_argument(
        "-c",
        "--config",
        type=Path,
        help="describe what this config's gateway checks (its apps, limits, address); "
        "default: the defaults, at http://127.0.0.1:8080",
    )
    openapi.add_argument("--server", metavar="URL", help="the server URL the description names")
    openapi.set_defaults(command=openapi_doc.print_openapi)

    emulator = commands.add_parser(
        "sandbox",
        help="run the platform emulator alone",
        description=(
            "Run the SuperApp platform emulator on its own, for clients that sign their own "
            "requests. Its controls are under /sandbox/ (see docs/sandbox.md)."
        ),
    )
    emulator.add_argument(
        "--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)"
    )
    emulator.add_argument(
        "--port", type=_port, default=8090, help="port (default 8090; 0 picks one)"
    )
    # Each app once, by any of the three; none given: the demo app.
    emulator.add_argument(
        "--app",
        action="append",
        metavar="APPID=SECRET",
        help=(
            "an app and its secret (repeatable; default "
            f"{DEMO_APPID}={DEMO_SECRET}); the secret shows in ps, so outside the demo "
            "prefer --app-secret-file or --app-secret-env"
        ),
    )
    emulator.add_argument(
        "--app-secret-file",
        action="append",
        metavar="APPID=PATH",
        help="an app whose secret is in the file PATH (repeatable)",
    )
    emulator.add_argument(
        "--app-secret-env",
        action="append",
        metavar="APPID=VAR",
        help="an app whose secret is in the environment variable VAR (repeatable)",
    )
    emulator.add_argument(
        "--explain",
        action="store_true",
        help="say in a sign error what the sandbox signed (canonical string, secret masked)",
    )
    emulator.add_argument("--token-expire-s", type=int, default=604800, help="accessToken life")
    emulator.add_argument(
        "--clock-offset-s",
        type=float,
        default=0.0,
        help="run the platform's clock (and its Date header) this far ahead, or behind",
    )
    emulator.add_argument(
        "--allow-backend-host",
        action="append",
        metavar="HOST",
        help=(
            "a host besides loopback that the simulator's open-mini-app may POST a login code "
            "to (repeatable)"
        ),
    )
    emulator.add_argument("--notify-attempts", type=int, default=5, help="callback attempts")
    emulator.add_argument(
        "--notify-backoff-s", type=float, default=1.0, help="first retry delay, doubling"
    )
    emulator.set_defaults(command=serve.sandbox)

    callbacks = commands.add_parser(
        "callbacks",
        help="list or replay payment callbacks in the outbox, or verify a saved one",
        description=(
            "Inspect the outbox of verified payment callbacks (callbacks.store), or check a "
            "delivery an app's service saved."
        ),
    )
    callback_commands = callbacks.add_subparsers(title="commands", required=True, metavar="COMMAND")
    listing = callback_commands.add_parser(
        "list", help="pending and dead deliveries", description="Show pending and dead deliveries."
    )
    _config_option(listing)
    listing.set_defaults(command=ops.callbacks_list)
    replay = callback_commands.add_parser(
        "replay",
        help="send one delivery again",
        description="Make a delivery (dead or not) pending again; the running gateway sends it.",
    )
    _config_option(replay)
    replay.add_argument("id", type=int, help="delivery id, as `callbacks list` shows it")
    replay.set_defaults(command=ops.callbacks_replay)
    checking = callback_commands.add_parser(
        "verify",
        help="check a saved delivery's signature with a secret",
        description=(
            "Check that a delivery an app's service received verifies with its signing "
            "secret (Standard Webhooks, as the service's library checks it), and if not, why. "
            "DELIVERY holds it as received: optionally the request line (POST /payments "
            "HTTP/1.1), the header lines (Name: value, LF or CRLF line ends), an empty line, "
            "then the body, taken byte for byte as it is after the empty line: an editor that "
            "rewrites the file's line ends, or adds one at its end, changes the body, and the "
            "signature no longer matches. Or the body alone with --body FILE and the headers "
            "with -H. The secret from a file, an environment variable or the config, never on "
            "the command line (ps would show it). Exit 0 verified, 1 not verified (stderr says "
            "why), 2 when the input or the secret cannot be used."
        ),
        epilog=(
            "The timestamp's age is always shown, but refused only with --tolerance-s: "
            "receivers allow 300 s between it and their clock, and a saved delivery is older "
            "than that by the time it is checked."
        ),
    )
    checking.add_argument(
        "delivery", nargs="?", metavar="DELIVERY", help="the saved delivery; - for stdin"
    )
    checking.add_argument(
        "--body", metavar="FILE", help="the body alone, saved byte for byte (- for stdin)"
    )
    checking.add_argument(
        "-H",
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="a header of the delivery, with --body (repeatable)",
    )
    secret = checking.add_mutually_exclusive_group(required=True)
    secret.add_argument(
        "--secret-file", type=Path, metavar="PATH", help="the whsec_ secret is in this file"
    )
    secret.add_argument(
        "--secret-env", metavar="VAR", help="the whsec_ secret is in this environment variable"
    )
    secret.add_argument(
        "--app",
        metavar="NAME",
        help="the config's app: its signing secrets (during a rotation both; the output says "
        "which signed)",
    )
    checking.add_argument(
        "-c",
        "--config",
        type=Path,
        help=f"the config of --app (default ./{DEFAULT_CONFIG_PATH})",
    )
    checking.add_argument(
        "--tolerance-s",
        type=deliveries.nonnegative_seconds,
        metavar="N",
        help="refuse a timestamp more than N seconds from this clock (receivers allow 300)",
    )
    checking.set_defaults(command=deliveries.verify_delivery)

    for name, helptext, run in (
        ("sign", "show the canonical string (secret masked) and the sign", tools.sign),
        ("verify", "check the sign=... among the params", tools.verify),
    ):
        sub = commands.add_parser(
            name,
            help=helptext,
            description=(
                f"{helptext[0].upper()}{helptext[1:]} for params given as key=value, as the "
                "gateway computes it: appid from the config, timestamp now unless given, a "
                "repeated key joined with commas."
            ),
        )
        _config_option(sub)
        sub.add_argument("--app", help="app name in the config (default: the default app)")
        sub.add_argument("params", nargs="*", metavar="key=value", help="request parameters")
        sub.set_defaults(command=run)
    return parser


def _port(text: str) -> int:
    # (Unchecked, 70000 would be bound as 4464: the socket keeps the low 16 bits.)
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535; 0 picks one)")
    return port


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"config file (default ./{DEFAULT_CONFIG_PATH})",
    )
