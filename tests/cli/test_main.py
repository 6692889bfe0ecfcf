"""The parser: every command its docstring lists exists, runs from the module it names, and
no command goes unlisted."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config.schema import DEFAULT_CONFIG_PATH

# "    callbacks list    the pending and dead deliveries ...     cli/ops.py"
LISTED = re.compile(r"^    ([a-z-]+(?: [a-z-]+)?)  +\S.*?  +cli/(\w+)\.py$")


def listed() -> dict[str, str]:
    """Each command in the docstring, with the module it names."""
    doc = main.__doc__ or ""
    return {
        match[1]: f"gateway.cli.{match[2]}"
        for line in doc.splitlines()
        if (match := LISTED.match(line))
    }


def commands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Each command the parser takes (a command with commands of its own by their full
    name), with its own parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if any(isinstance(inner, argparse._SubParsersAction) for inner in sub._actions):
                    yield from commands(sub, f"{prefix}{name} ")
                else:
                    yield f"{prefix}{name}", sub


def test_the_docstring_lists_every_command_of_the_parser_and_no_other() -> None:
    parsed = dict(commands(main.parser_of_commands()))
    assert len(listed()) == 12
    assert sorted(listed()) == sorted(parsed)


@pytest.mark.parametrize("command", sorted(listed()))
def test_each_command_runs_from_the_module_the_docstring_names(command: str) -> None:
    parsed = dict(commands(main.parser_of_commands()))
    run = parsed[command].get_default("command")
    assert callable(run)
    assert run.__module__ == listed()[command]


def test_commands_that_read_a_config_default_to_the_one_here() -> None:
    parser = main.parser_of_commands()
    for argv in (["serve"], ["reload"], ["check-config"], ["callbacks", "list"], ["sign"]):
        assert parser.parse_args(argv).config == DEFAULT_CONFIG_PATH
    assert parser.parse_args(["verify", "-c", "x.yaml"]).config == Path("x.yaml")


@pytest.mark.parametrize(("port", "taken"), [("0", 0), ("8090", 8090), ("65535", 65535)])
def test_the_sandbox_port_takes_0_to_65535(port: str, taken: int) -> None:
    assert main.parser_of_commands().parse_args(["sandbox", "--port", port]).port == taken


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_the_sandbox_port_refuses_what_is_not_a_port(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main.parser_of_commands().parse_args(["sandbox", "--port", port])
    assert exited.value.code == 2
    assert f"{port!r} is not a port (0 to 65535; 0 picks one)" in capsys.readouterr().err


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main.parser_of_commands().parse_args([])
    assert exited.value.code == 2
    assert "usage: neu-gateway" in capsys.readouterr().err
