"""gateway.yaml's JSON Schema as a file: what `neu-gateway schema` prints."""

from __future__ import annotations

import argparse
import json

from gateway.cli.config_file import EXIT_OK
from gateway.config.json_schema import config_schema


def schema_text() -> str:
    """The schema as JSON, in the models' order (a diff of two versions reads as a change of
    options), and ASCII-only, so it is the same file in any locale."""
    return json.dumps(config_schema(), indent=2) + "\n"


def print_schema(args: argparse.Namespace) -> int:
    print(schema_text(), end="")
    return EXIT_OK
