"""The log format a config file names, read before the config is validated: `serve` writes
its lines about a config it cannot use (and the warnings of reading it) in that format too."""

from __future__ import annotations

from pathlib import Path

import yaml

FORMATS = ("json", "text")


def log_format_named(path: Path) -> str | None:
    """`logging.format` as written in the file, when it can be read that far; else None."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None
    section = document.get("logging") if isinstance(document, dict) else None
    named = section.get("format") if isinstance(section, dict) else None
    return named if named in FORMATS else None
