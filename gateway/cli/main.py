"""neu-gateway: serve | check-config | sign | verify."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web

from gateway import __version__, logs
from gateway.callbacks.outbox import DEAD, PENDING, Outbox, OutboxError
from gateway.cli.starter import ENVIRONMENT, STARTER_CONFIG
from gateway.config.errors import ConfigError
from gateway.config.load import load
from gateway.config.model import App, Config
from gateway.config.schema import (
    DEFAULT_CONFIG_PATH,
    LimitsConfig,
    ListenConfig,
    is_loopback,
    without_credentials,
)
from gateway.core import signing
from gateway.core.clock import SystemClock
from gateway.core.hosts import host_name
from gateway.core.params import caller_fields, is_secret_name
from gateway.runtime.app import (
    create_app,
    open_outbox,
    probe_upstreams,
    sandbox_runner,
    tls_setup_problems,
)
from gateway.runtime.handover import receive_start
from gateway.runtime.serve import StartError, SupervisorPipes, serve_gateway, start_listening
from gateway.runtime.supervisor import (
    MAX_WORKERS,
    Supervisor,
    placed,
    refusal,
    worker_argv,
    worker_placement,
)
from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import Settings

log = logs.logger("neu_gateway")

T = TypeVar("T")

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_CONFIG = 2
# The public demo app of the sandbox; never a real app's credentials.
DEMO_APPID = "demo-appid"
DEMO_SECRET = "demo-secret"  # noqa: S105 - the documented, public sandbox demo secret


def main(argv: Sequence[str] | None = None) -> int:
    # Until serve installs its handler, a reload signal must not end the process (and the
    # workers, which inherit this, start the same way).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parser = _parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    command: Callable[[argparse.Namespace], int] = args.command
    return command(args)


def _parser() -> argparse.ArgumentParser:
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

    serve = commands.add_parser("serve", help="run the gateway", description="Run the gateway.")
    _config_option(serve)
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="N processes on the same ports (default: workers in the config, else 1); "
        "more than 1 needs cache.backend: redis",
    )
    serve.set_defaults(command=_serve)

    reload = commands.add_parser(
        "reload",
        help="make the running gateway re-read its config",
        description=(
            "Validate the config, then send SIGHUP to the running gateway: the process in "
            "the config's pid_file, or --pid. It swaps the new config in, or keeps the old "
            "one and logs why."
        ),
    )
    _config_option(reload)
    reload.add_argument("--pid", type=int, help="the gateway's process id (default: pid_file)")
    reload.set_defaults(command=_reload)

    check = commands.add_parser(
        "check-config",
        help="validate gateway.yaml and exit",
        description="Validate the config (and that every secret can be read); exit 2 if not.",
    )
    _config_option(check)
    check.add_argument(
        "--probe",
        action="store_true",
        help="also call each app's upstream: reachable, TLS, proxy, and its clock's offset",
    )
    check.set_defaults(command=_check_config)

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
    init.set_defaults(command=_init)

    sandbox = commands.add_parser(
        "sandbox",
        help="run the platform emulator alone",
        description=(
            "Run the SuperApp platform emulator on its own, for clients that sign their own "
            "requests. Its controls are under /sandbox/ (see the README)."
        ),
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    sandbox.add_argument(
        "--port", type=_port, default=8090, help="port (default 8090; 0 picks one)"
    )
    sandbox.add_argument(
        "--app",
        action="append",
        metavar="APPID=SECRET",
        help=f"an app to register (repeatable; default {DEMO_APPID}={DEMO_SECRET})",
    )
    sandbox.add_argument(
        "--explain",
        action="store_true",
        help="say in a sign error what the sandbox signed (canonical string, secret masked)",
    )
    sandbox.add_argument("--token-expire-s", type=int, default=604800, help="accessToken life")
    sandbox.add_argument(
        "--clock-offset-s",
        type=float,
        default=0.0,
        help="run the platform's clock (and its Date header) this far ahead, or behind",
    )
    sandbox.add_argument(
        "--allow-backend-host",
        action="append",
        metavar="HOST",
        help=(
            "a host besides loopback that the simulator's open-mini-app may POST a login code "
            "to (repeatable)"
        ),
    )
    sandbox.add_argument("--notify-attempts", type=int, default=5, help="callback attempts")
    sandbox.add_argument(
        "--notify-backoff-s", type=float, default=1.0, help="first retry delay, doubling"
    )
    sandbox.set_defaults(command=_sandbox)

    callbacks = commands.add_parser(
        "callbacks",
        help="list or replay payment callbacks in the outbox",
        description="Inspect the outbox of verified payment callbacks (callbacks.store).",
    )
    callback_commands = callbacks.add_subparsers(title="commands", required=True, metavar="COMMAND")
    listing = callback_commands.add_parser(
        "list", help="pending and dead deliveries", description="Show pending and dead deliveries."
    )
    _config_option(listing)
    listing.set_defaults(command=_callbacks_list)
    replay = callback_commands.add_parser(
        "replay",
        help="send one delivery again",
        description="Make a delivery (dead or not) pending again; the running gateway sends it.",
    )
    _config_option(replay)
    replay.add_argument("id", type=int, help="delivery id, as `callbacks list` shows it")
    replay.set_defaults(command=_callbacks_replay)

    for name, helptext, run in (
        ("sign", "show the canonical string (secret masked) and the sign", _sign),
        ("verify", "check the sign=... among the params", _verify),
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


def _load_or_report(path: Path) -> Config | None:
    if _is_missing(path):
        default = " (the default: gateway.yaml in the current directory)"
        print(
            f"neu-gateway: no config file at {path.absolute()}"
            f"{default if path == DEFAULT_CONFIG_PATH else ''}",
            file=sys.stderr,
        )
        print(
            "  name yours with -c FILE, or write a commented one with: neu-gateway init [DIR]",
            file=sys.stderr,
        )
        return None
    try:
        config = load(path)
    except ConfigError as exc:
        print(f"neu-gateway: invalid config {path}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None
    return config


def _is_missing(path: Path) -> bool:
    try:
        path.stat()
    except FileNotFoundError:
        return True
    except OSError:
        return False  # there or not, it cannot be read: load() says why
    return False


def _check_config(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    tls_problems = tls_setup_problems(config)
    if tls_problems:
        print(f"neu-gateway: invalid config {args.config}:", file=sys.stderr)
        for problem in tls_problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{args.config}: ok")
    print(f"  listen: {config.listen.host}:{config.listen.port}")
    sandbox = config.sandbox.listen
    for app in config.apps.values():
        default = " (default)" if app.name == config.default_app else ""
        upstream = app.upstream
        if app.uses_sandbox:
            upstream = f"sandbox (embedded, http://{sandbox.host}:{sandbox.port})"
        # Only when off: the doc's checks are the default, and worth naming when they are not.
        checks = ", validation off" if app.validation == "off" else ""
        print(f"  app {app.name}{default}: appid {app.appid}, upstream {upstream}{checks}")
    for line in _summary(config):
        print(f"  {line}")
    if args.probe:
        lines, all_answered = _run_for(probe_upstreams(config))
        for line in lines:
            print(f"  probe: {line}")
        if not all_answered:
            return EXIT_INVALID
    return EXIT_OK


def _run_for(main: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(main)


def _summary(config: Config) -> list[str]:
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
        lines.append(
            f"callbacks: listen {listen.host}:{listen.port}, store {config.callbacks.store}"
        )
        lines += [
            f"  app {app.name}: deliver_to "
            + (app.callbacks.deliver_to or "none, so its callbacks end up dead in the outbox")
            + ("" if app.callbacks.verify_sign else "; verify_sign off")
            for app in config.apps.values()
        ]
    cache = config.cache
    if cache.backend == "redis" and cache.url is not None:
        where = f"redis at {without_credentials(cache.url)}, keys under {cache.key_prefix!r}"
        lines.append(f"cache: {where}")
    else:
        lines.append(f"cache: memory, up to {cache.max_entries} logins")
    return lines


def _init(args: argparse.Namespace) -> int:
    path = args.dir / DEFAULT_CONFIG_PATH
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
    width = max(len(name) for name, _ in ENVIRONMENT)
    print(f"wrote {path}")
    print("next:")
    print("  1. put your app's appid and the platform's base URL in it (apps.myapp)")
    print("  2. set the environment variables it reads:")
    for name, meaning in ENVIRONMENT:
        print(f"       {name:{width}}  {meaning}")
    print(f"  3. neu-gateway check-config -c {path}")
    print(f"  4. neu-gateway serve -c {path}")
    return EXIT_OK


SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def _warn_of_capped_backlogs(config: Config) -> None:
    """The kernel silently holds fewer connections than a backlog above its own cap."""
    try:
        cap = int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return  # not Linux: nothing to compare with
    listeners = {
        "listen": config.listen,
        "sandbox.listen": config.sandbox.listen,
        "callbacks.listen": config.callbacks.listen,
        "admin.listen": config.admin.listen,
    }
    for key, listen in listeners.items():
        if listen is not None and listen.backlog > cap:
            log.warning(
                "%s.backlog is %d, but the kernel holds at most %d (net.core.somaxconn)",
                key,
                listen.backlog,
                cap,
            )


def _serve(args: argparse.Namespace) -> int:
    placement = worker_placement(os.environ)
    if placement is None:
        config = _load_or_report(args.config)
        if config is None:
            return EXIT_CONFIG
    else:
        # A worker runs the config its supervisor has in force, never the file as it is now.
        config = receive_start(placement.handover_fd)
        if config is None:
            print(
                f"neu-gateway: worker {placement.index}: the supervisor ended before it "
                "handed over the config",
                file=sys.stderr,
            )
            return EXIT_INVALID
    if not config.listen.is_loopback and not config.callers:
        log.warning(
            "INSECURE: listening on %s with no caller authentication "
            "(insecure_allow_anonymous: true): anyone who can reach this address can make "
            "signed calls as every configured app",
            config.listen.host,
        )
    # The process's log redaction learns the config's secrets before anything can log them.
    logs.REDACTION.add_secrets(config.credentials())
    logs.configure(args.log_level, args.log_format or config.logging.format)
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        print(f"neu-gateway: --workers must be 1 to {MAX_WORKERS}", file=sys.stderr)
        return EXIT_CONFIG

    def as_run(loaded: Config) -> Config:
        """The file's config as this process runs it, at the start and at each reload."""
        if args.workers is not None:
            loaded = replace(loaded, workers=args.workers)
        return loaded if placement is None else placed(loaded, placement)

    config = as_run(config)
    if placement is None:
        _warn_of_capped_backlogs(config)
    else:
        logs.configure(args.log_level, args.log_format or config.logging.format, placement.index)
    try:
        if placement is None and config.workers > 1:
            problem = refusal(config)
            if problem is not None:
                print(f"neu-gateway: {problem}", file=sys.stderr)
                return EXIT_CONFIG
            _run(Supervisor(config, args.config, worker_argv(), as_run).run())
        else:
            pipes = (
                None
                if placement is None
                else SupervisorPipes(placement.index, placement.ready_fd, placement.handover_fd)
            )
            app = create_app(config)
            _run(serve_gateway(app, config, args.config, pipes, as_run))
    except StartError as exc:
        print(f"neu-gateway: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def _is_gateway(pid: int) -> bool:
    """Whether the process runs this program: a SIGHUP would end most others."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        # No /proc (not Linux): the pid_file is all there is to go by.
        return Path("/proc").is_dir() is False and _alive(pid)
    return any(part.endswith((b"neu-gateway", b"gateway")) for part in command)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _reload(args: argparse.Namespace) -> int:
    """Validates the config, then sends SIGHUP to the running gateway (pid_file or --pid)."""
    config = _load_or_report(args.config)
    if config is None:
        print("neu-gateway: not reloaded; the running gateway keeps its config", file=sys.stderr)
        return EXIT_CONFIG
    pid: int | None = args.pid
    if pid is None:
        if config.pid_file is None:
            print(
                "neu-gateway: no pid_file in the config: give the gateway's process id "
                "with --pid, or set pid_file (serve writes it)",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        try:
            pid = int(config.pid_file.read_text().strip())
        except (OSError, ValueError) as exc:
            print(
                f"neu-gateway: cannot read a process id from pid_file {config.pid_file} "
                f"({getattr(exc, 'strerror', None) or 'not a number'}); is the gateway running?",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    if not _is_gateway(pid):
        print(
            f"neu-gateway: process {pid} is not a running neu-gateway (a stale pid_file?); "
            "nothing sent",
            file=sys.stderr,
        )
        return EXIT_INVALID
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"neu-gateway: cannot signal process {pid} ({exc.strerror})", file=sys.stderr)
        return EXIT_INVALID
    print(f"sent SIGHUP to {pid}: it reloads {args.config} (its log says whether it took it)")
    return EXIT_OK


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


async def _serve_until_stopped(
    runner: web.AppRunner, listen: ListenConfig, what: str, key: str
) -> None:
    try:
        await start_listening(runner, listen, key)
    except StartError as exc:
        raise SystemExit(f"neu-gateway: {exc}") from None
    for address, bound_port, *_ in runner.addresses:
        log.info("%s listening on http://%s:%d", what, address, bound_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("%s stopping: finishing requests in flight", what)
    await runner.cleanup()


def _sandbox(args: argparse.Namespace) -> int:
    if not is_loopback(args.host):
        print("neu-gateway: the sandbox listens on a loopback address only", file=sys.stderr)
        return EXIT_CONFIG
    secrets = {}
    for item in args.app or [f"{DEMO_APPID}={DEMO_SECRET}"]:
        appid, eq, secret = item.partition("=")
        if not eq or not appid or not secret:
            print(f"neu-gateway: --app {item!r} is not APPID=SECRET", file=sys.stderr)
            return EXIT_CONFIG
        secrets[appid] = secret
    backend_hosts = set()
    for item in args.allow_backend_host or []:
        host = host_name(item)
        if host is None:
            print(
                f"neu-gateway: --allow-backend-host {item!r} is not a bare host name or IP "
                "address, e.g. backend.internal or 10.0.0.5 (no scheme, port or path)",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        backend_hosts.add(host)
    logs.REDACTION.add_secrets(secrets.values())
    settings = Settings(
        token_expire_s=args.token_expire_s,
        clock_offset_s=args.clock_offset_s,
        notify_attempts=args.notify_attempts,
        notify_backoff_s=args.notify_backoff_s,
        explain=args.explain,
        allowed_backend_hosts=frozenset(backend_hosts),
    )
    runner = sandbox_runner(create_sandbox_app(secrets, settings), LimitsConfig(), gateways=0)
    listen = ListenConfig(host=args.host, port=args.port)
    _run(_serve_until_stopped(runner, listen, "sandbox", "--host/--port"))
    return EXIT_OK


def _callbacks_list(args: argparse.Namespace) -> int:
    deliveries = _with_outbox(args, lambda outbox: outbox.listing((PENDING, DEAD)))
    if deliveries is None:
        return EXIT_CONFIG
    print(f"{'id':>6}  {'state':8} {'app':12} {'tradeNo:status':44} {'attempts':>8}  last error")
    for d in deliveries:
        key = d.idempotency_key
        print(f"{d.id:>6}  {d.state:8} {d.app:12} {key:44} {d.attempts:>8}  {d.last_error or '-'}")
    print(f"{len(deliveries)} pending or dead")
    return EXIT_OK


def _callbacks_replay(args: argparse.Namespace) -> int:
    now = SystemClock().now_ms() / 1000
    found = _with_outbox(args, lambda outbox: outbox.replay(args.id, now))
    if found is None:
        return EXIT_CONFIG
    if not found:
        print(f"neu-gateway: no delivery {args.id} in the outbox", file=sys.stderr)
        return EXIT_INVALID
    print(f"delivery {args.id} is pending again; the running gateway sends it shortly")
    return EXIT_OK


def _with_outbox(args: argparse.Namespace, operation: Callable[[Outbox], Awaitable[T]]) -> T | None:
    """The operation's result on the config's outbox, or None once the problem is reported."""
    config = _load_or_report(args.config)
    if config is None:
        return None
    if config.callbacks.listen is None:
        # Opening the store would create an empty outbox where none was ever used.
        print(
            f"neu-gateway: callbacks are off in {args.config} (no callbacks.listen), so there is "
            "no outbox to read",
            file=sys.stderr,
        )
        return None

    async def run() -> T:
        outbox = open_outbox(config)
        try:
            return await operation(outbox)
        finally:
            await outbox.close()

    try:
        return asyncio.run(run())
    except OutboxError as exc:
        print(
            f"neu-gateway: cannot read the outbox {config.callbacks.store}: {exc}", file=sys.stderr
        )
        return None


def _params_for(args: argparse.Namespace) -> tuple[App, dict[str, str]] | None:
    config = _load_or_report(args.config)
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


def _print_canonical(app: App, fields: dict[str, str]) -> None:
    print(f"app:       {app.name} (appid {app.appid})")
    print(f"canonical: {signing.canonical_string(fields, signing.SECRET_MASK)}")


def _sign(args: argparse.Namespace) -> int:
    found = _params_for(args)
    if found is None:
        return EXIT_CONFIG
    app, fields = found
    fields.pop("sign", None)
    fields["sign"] = signing.sign(fields, app.secret.reveal())
    _print_canonical(app, fields)
    print(f"sign:      {fields['sign']}")
    print(f"form:      {urlencode(fields)}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    found = _params_for(args)
    if found is None:
        return EXIT_CONFIG
    app, fields = found
    _print_canonical(app, fields)
    if "sign" not in fields:
        print("result:    no sign=... given", file=sys.stderr)
        return EXIT_INVALID
    if signing.verify(fields, app.secret.reveal()):
        print("result:    valid")
        return EXIT_OK
    print(f"result:    INVALID, expected sign {signing.sign(fields, app.secret.reveal())}")
    return EXIT_INVALID
