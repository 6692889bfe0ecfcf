"""`neu-gateway schema`."""

from __future__ import annotations

import json

import pytest

from gateway.config.json_schema import config_schema
from tests.cli.support import run


def test_schema_prints_the_json_schema_indented_with_a_final_newline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ran = run(capsys, "schema")
    assert (ran.status, ran.stderr) == (0, "")
    assert json.loads(ran.stdout) == config_schema()
    assert ran.stdout == json.dumps(config_schema(), indent=2) + "\n"
    assert ran.stdout == run(capsys, "schema").stdout, "the same text each time"
