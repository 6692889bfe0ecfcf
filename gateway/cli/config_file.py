"""The config file a command reads, its problems told on stderr; and the exit codes every
command returns."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.config.errors import ConfigError
from gateway.config.load import load
from gateway.config.model import Config
from gateway.config.schema import DEFAULT_CONFIG_PATH

EXIT_OK = 0
# A check that failed (a sign, a probe), or a process that could not start or do its work.
EXIT_INVALID = 1
# The config (or an argument) is wrong: nothing was done.
EXIT_CONFIG = 2


def load_or_report(path: Path) -> Config | None:
    """The config at `path`, or None once stderr says why there is none."""
    if is_missing(path):
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
        report_problems(path, exc.problems)
        return None
    return config


def report_problems(path: Path, problems: list[str]) -> None:
    print(f"neu-gateway: invalid config {path}:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def is_missing(path: Path) -> bool:
    try:
        path.stat()
    except FileNotFoundError:
        return True
    except OSError:
        return False  # there or not, it cannot be read: load() says why
    return False
