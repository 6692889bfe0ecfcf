"""The mkdocs hook that fills each page's `<!-- generated: NAME -->` line at build time, from
the code and files the section describes, so the site cannot drift from them. What follows the
line up to a `<!-- /generated -->` line, if the page has one, is for readers of the Markdown
source and is replaced too."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# mkdocs loads a hook with its own folder on the import path.
from renderers import ErrorCode, api_reference, config_reference, error_reference, readme_as_home

REPO = Path(__file__).resolve().parents[2]
# The marker line, and what a page may hold after it up to `<!-- /generated -->` for readers of
# the Markdown itself (in the repository, where nothing is generated): the section replaces both.
MARKER = re.compile(
    r"^<!-- generated: ([a-z-]+) -->$(?:\n(?:(?!<!-- generated: ).*\n)*?<!-- /generated -->$)?",
    re.MULTILINE,
)


def readme() -> str:
    return readme_as_home((REPO / "README.md").read_text(encoding="utf-8"))


def configuration() -> str:
    # The shipped schema, which a test keeps equal to the one the code generates.
    schema = json.loads((REPO / "docs" / "gateway.schema.json").read_text(encoding="utf-8"))
    return config_reference(schema)


def error_codes() -> Iterator[ErrorCode]:
    """Every subclass of GatewayError, depth first in the order the module defines them."""
    from gateway.core.errors import GatewayError

    def walk(parent: type[GatewayError]) -> Iterator[ErrorCode]:
        for error in parent.__subclasses__():
            summary = " ".join((error.__doc__ or "").split())
            above = None if parent is GatewayError else parent.code
            yield ErrorCode(error.status, error.code, summary, error.message, above)
            yield from walk(error)

    return walk(GatewayError)


def errors() -> str:
    return error_reference(error_codes())


def api() -> str:
    # Imported when the page is built, not when the hook is loaded: the rest of the site does
    # not depend on it.
    module = importlib.import_module("gateway.contract.openapi")
    document: dict[str, Any] = module.build_document()
    return api_reference(document)


SECTIONS: dict[str, Callable[[], str]] = {
    "readme": readme,
    "configuration": configuration,
    "errors": errors,
    "api": api,
}


def on_page_markdown(markdown: str, **_: Any) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in SECTIONS:
            raise ValueError(f"no generated section {name!r}; known: {sorted(SECTIONS)}")
        return SECTIONS[name]()

    return MARKER.sub(fill, markdown)
