"""The log format a config file names, read whether or not the config is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.peek import log_format_named


@pytest.mark.parametrize(
    ("text", "named"),
    [
        pytest.param("logging: {format: json}\napps: {}\ntimeout: 1\n", "json", id="invalid"),
        pytest.param("logging:\n  format: text\n", "text", id="text"),
        pytest.param("apps: {}\n", None, id="not named"),
        pytest.param("logging: {format: xml}\n", None, id="not a format"),
        pytest.param("logging: json\n", None, id="not a section"),
        pytest.param("logging: {format: json\napps: [\n", None, id="not YAML"),
        pytest.param("- a list\n", None, id="not a mapping"),
        pytest.param("[" * 500, None, id="nested past recursion"),
    ],
)
def test_the_format_is_read_as_far_as_the_file_goes(
    tmp_path: Path, text: str, named: str | None
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    assert log_format_named(path) == named


def test_a_file_that_cannot_be_read_names_none(tmp_path: Path) -> None:
    assert log_format_named(tmp_path) is None
    assert log_format_named(tmp_path / "absent.yaml") is None
    (tmp_path / "latin1.yaml").write_bytes(b"logging: {format: json} # \xe9\n")
    assert log_format_named(tmp_path / "latin1.yaml") is None
