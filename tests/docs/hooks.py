"""The site's hook and renderers (docs/hooks/), imported as mkdocs imports them: by path, with
their folder on the import path."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from tests.docs.pages import DOCS


def load(name: str) -> ModuleType:
    folder = str(DOCS / "hooks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


renderers = load("renderers")
generated = load("generated")
