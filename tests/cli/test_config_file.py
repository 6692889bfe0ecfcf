"""The config file a command names: what it says when there is none, or a wrong one."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.config_file import load_or_report
from gateway.config.schema import DEFAULT_CONFIG_PATH
from tests.support.processes import write_config


def test_no_file_at_the_default_path_says_it_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_or_report(DEFAULT_CONFIG_PATH) is None
    assert capsys.readouterr().err.splitlines() == [
        f"neu-gateway: no config file at {tmp_path}/gateway.yaml (the default: gateway.yaml in "
        "the current directory)",
        "  name yours with -c FILE, or write a commented one with: neu-gateway init [DIR]",
    ]


def test_no_file_at_a_named_path_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_or_report(tmp_path / "elsewhere.yaml") is None
    first = capsys.readouterr().err.splitlines()[0]
    assert first == f"neu-gateway: no config file at {tmp_path}/elsewhere.yaml"


def test_a_wrong_config_is_told_a_problem_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, workers="none")
    assert load_or_report(config) is None
    header, *problems = capsys.readouterr().err.splitlines()
    assert header == f"neu-gateway: invalid config {config}:"
    assert problems
    assert all(problem.startswith("  ") for problem in problems)
    assert any(problem.startswith("  workers") for problem in problems)


def test_a_file_that_cannot_be_read_is_not_called_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_or_report(tmp_path) is None
    err = capsys.readouterr().err
    assert "no config file" not in err
    assert "cannot read the config file (Is a directory)" in err


def test_a_good_config_is_read_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEU_SECRET_DEMO", "s3cret-value")
    config = load_or_report(write_config(tmp_path))
    assert config is not None
    assert config.apps["demo"].appid == "demo-appid"
    assert capsys.readouterr() == ("", "")
