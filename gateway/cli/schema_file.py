"""gateway.yaml's JSON Schema as a file: what `neu-gateway schema` prints, what `init` writes
beside the config, and the first line that points an editor at it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gateway.cli.config_file import EXIT_OK
from gateway.config.json_schema import config_schema

# Beside the config `init` writes, so the editor finds it offline and it matches the version
# that wrote the config.
SCHEMA_FILE = Path("gateway.schema.json")


def schema_text() -> str:
    """The schema as JSON, in the models' order (a diff of two versions reads as a change of
    options), and ASCII-only, so it is the same file in any locale."""
    return json.dumps(config_schema(), indent=2) + "\n"


def modeline(schema: str) -> str:
    """The first line of a config file that yaml-language-server (VS Code's YAML extension,
    and other editors through it) reads to complete and check the file against `schema`, a
    path relative to the config file or a URL."""
    return f"# yaml-language-server: $schema={schema}\n"


def write_schema(path: Path) -> bool:
    """Write the schema at `path` unless it already holds it; whether it was written."""
    text = schema_text()
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.write_text(text, encoding="utf-8")
    return True


def print_schema(args: argparse.Namespace) -> int:
    print(schema_text(), end="")
    return EXIT_OK
