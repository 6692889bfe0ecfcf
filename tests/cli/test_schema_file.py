"""`neu-gateway schema`, and the schema `init` writes beside the config it names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.schema_file import SCHEMA_FILE, schema_text
from gateway.config.json_schema import config_schema
from tests.cli.support import run

MODELINE = "# yaml-language-server: $schema=gateway.schema.json"


def test_schema_prints_the_json_schema_indented_with_a_final_newline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ran = run(capsys, "schema")
    assert (ran.status, ran.stderr) == (0, "")
    assert json.loads(ran.stdout) == config_schema()
    assert ran.stdout == json.dumps(config_schema(), indent=2) + "\n"
    assert ran.stdout == run(capsys, "schema").stdout, "the same text each time"


def test_init_writes_the_schema_beside_the_config_and_names_it_on_the_first_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(capsys, "init", str(tmp_path))
    assert ran.status == 0
    config, schema = tmp_path / "gateway.yaml", tmp_path / SCHEMA_FILE
    assert config.read_text().splitlines()[0] == MODELINE
    assert schema.read_text() == schema_text()
    assert ran.stdout.splitlines()[1].startswith(f"wrote {schema} (its JSON Schema")


def test_init_refreshes_a_schema_beside_it_that_differs_and_keeps_one_that_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / SCHEMA_FILE
    schema.write_text('{"an": "older version"}\n')
    assert run(capsys, "init", str(tmp_path)).status == 0
    assert schema.read_text() == schema_text()
    again = run(capsys, "init", str(tmp_path), "--force")
    assert again.stdout.splitlines()[1].startswith(f"kept {schema} (")


def test_init_says_why_it_cannot_write_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / SCHEMA_FILE).mkdir()
    ran = run(capsys, "init", str(tmp_path))
    assert ran.status == 2
    assert ran.stderr == f"neu-gateway: cannot write {tmp_path / SCHEMA_FILE} (Is a directory)\n"


def test_the_config_init_writes_matches_the_schema_it_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What an editor opening it would check, through the first line's relative path."""
    assert run(capsys, "init", str(tmp_path)).status == 0
    config = tmp_path / "gateway.yaml"
    named = config.read_text().splitlines()[0].removeprefix(MODELINE.split("=")[0] + "=")
    checked = subprocess.run(
        [
            str(Path(sys.executable).with_name("check-jsonschema")),
            "--schemafile",
            str(config.parent / named),
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
