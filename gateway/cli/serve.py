"""The commands that run a server until stopped: serve (the gateway, one process or a
supervisor and its workers) and sandbox (the platform emulator alone)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path

from gateway import logs
from gateway.cli.config_file import EXIT_CONFIG, EXIT_INVALID, EXIT_OK, load_or_report
from gateway.cli.sandbox_apps import AppArguments, SandboxAppsError, sandbox_secrets
from gateway.config.errors import ConfigError
from gateway.config.load import open_to_anyone
from gateway.config.model import Config
from gateway.config.placeholders import placeholders_left
from gateway.config.schema import LimitsConfig, ListenConfig, is_loopback
from gateway.core.hosts import host_name
from gateway.runtime.app import create_app
from gateway.runtime.handover import receive_start
from gateway.runtime.listeners import StartError, sandbox_runner
from gateway.runtime.serve import serve_gateway, serve_until_stopped
from gateway.runtime.supervisor import Supervisor
from gateway.runtime.workers import MAX_WORKERS, WorkerEnvironment, placed, refusal, worker_argv
from gateway.sandbox.server import create_sandbox_app
from gateway.sandbox.world import Settings

log = logs.logger("neu_gateway")

SOMAXCONN = Path("/proc/sys/net/core/somaxconn")
LISTEN_FORMS = "HOST:PORT, e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080 (port 0 picks one)"


def listen_address(text: str) -> tuple[str, int]:
    """--listen's value as (host, port): HOST:PORT, an IPv6 address in brackets."""
    host, colon, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            # Bare, as listen.host holds it; brackets only mark where the address ends.
            host = ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {host!r} in brackets is not an IPv6 address; give {LISTEN_FORMS}"
            ) from None
    else:
        if _is_ipv6(host):
            raise argparse.ArgumentTypeError(
                f"{text!r}: an IPv6 address goes in brackets, as in [::1]:8080"
            )
        named = host_name(host) if colon and host == host.strip() else None
        if named is None:
            raise argparse.ArgumentTypeError(f"{text!r} is not {LISTEN_FORMS}")
        host = named
    # isdigit() would take '²', which int() refuses: ASCII digits only.
    port = int(port_text) if port_text.isascii() and port_text.isdigit() else -1
    if not 0 <= port <= 65535 or len(port_text) > 5:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be 0 to 65535 (0 picks one)")
    return host, port


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def listening_on(config: Config, address: tuple[str, int] | None) -> Config:
    """The config with serve --listen's address in place of listen.host and listen.port; at
    the start and at each reload, so the file's own never takes over (nor reads as a change
    that needs a restart). Held to the file's own rule for a non-loopback address."""
    if address is None:
        return config
    host, port = address
    listen = config.listen.model_copy(update={"host": host, "port": port})
    exposed = open_to_anyone(listen, bool(config.callers), config.insecure_allow_anonymous)
    if exposed is not None:
        raise ConfigError([f"--listen: {exposed}"])
    return replace(config, listen=listen)


def serve(args: argparse.Namespace) -> int:
    worker = WorkerEnvironment.read(os.environ)
    if worker is None:
        config = load_or_report(args.config)
        if config is None:
            return EXIT_CONFIG
    else:
        # A worker runs the config its supervisor has in force, never the file as it is now.
        config = receive_start(worker.pipes.handover_fd)
        if config is None:
            print(
                f"neu-gateway: worker {worker.placement.index}: the supervisor ended before it "
                "handed over the config",
                file=sys.stderr,
            )
            return EXIT_INVALID
    try:
        config = listening_on(config, args.listen)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"neu-gateway: {line}", file=sys.stderr)
        return EXIT_CONFIG
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
    # check-config refuses these; serve still starts, for what else the config serves (once:
    # a worker's config is its supervisor's).
    for placeholder in placeholders_left(config) if worker is None else []:
        log.warning(
            "%s: every call of this app will fail until it holds the app's own", placeholder
        )
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        print(f"neu-gateway: --workers must be 1 to {MAX_WORKERS}", file=sys.stderr)
        return EXIT_CONFIG

    def as_run(loaded: Config) -> Config:
        """The file's config as this process runs it, at the start and at each reload."""
        loaded = listening_on(loaded, args.listen)
        if args.workers is not None:
            loaded = replace(loaded, workers=args.workers)
        return loaded if worker is None else placed(loaded, worker)

    config = as_run(config)
    if worker is None:
        warn_of_capped_backlogs(config)
    else:
        logs.configure(
            args.log_level, args.log_format or config.logging.format, worker.placement.index
        )
    try:
        if worker is None and config.workers > 1:
            problem = refusal(config)
            if problem is not None:
                print(f"neu-gateway: {problem}", file=sys.stderr)
                return EXIT_CONFIG
            run(Supervisor(config, args.config, worker_argv(), as_run).run())
        else:
            app = create_app(config)
            run(serve_gateway(app, config, args.config, worker, as_run))
    except StartError as exc:
        print(f"neu-gateway: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def warn_of_capped_backlogs(config: Config) -> None:
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


def sandbox(args: argparse.Namespace) -> int:
    if not is_loopback(args.host):
        print("neu-gateway: the sandbox listens on a loopback address only", file=sys.stderr)
        return EXIT_CONFIG
    given = AppArguments(args.app, args.app_secret_file, args.app_secret_env)
    try:
        secrets = sandbox_secrets(given, os.environ)
    except SandboxAppsError as exc:
        print(f"neu-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
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
    try:
        run(serve_until_stopped(runner, listen, "sandbox", "--host/--port"))
    except StartError as exc:
        print(f"neu-gateway: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def run(main: Coroutine[object, object, None]) -> None:
    """Runs a server to its end, on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
