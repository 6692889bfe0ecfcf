"""A command run in this process, as the parser hands it its arguments (main() would also set
up the process's logging and signals, which belong to the test run)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.cli.main import parser_of_commands


@dataclass
class Ran:
    status: int
    stdout: str
    stderr: str


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Ran:
    args = parser_of_commands().parse_args(argv)
    status = args.command(args)
    out, err = capsys.readouterr()
    return Ran(status, out, err)
