"""Library internals stay in their adapters: outside them, gateway/ reads a `_name` only off
`self` or `cls` (its own state), never off an aiohttp or prometheus-client object."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"
# The one door to each library's internals; their tests check each name still exists.
ADAPTERS = {
    GATEWAY / "http" / "aiohttp_server.py",
    GATEWAY / "upstream" / "aiohttp_client.py",
    GATEWAY / "metrics" / "prometheus.py",
}
MODULES = sorted(path for path in GATEWAY.rglob("*.py") if path not in ADAPTERS)


def foreign_private_reads(source: str) -> list[str]:
    return [
        f"{node.lineno}: .{node.attr}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(GATEWAY)))
def test_outside_the_adapters_only_self_has_private_attributes_read(path: Path) -> None:
    assert foreign_private_reads(path.read_text()) == []


def test_the_check_sees_a_private_read_off_another_object() -> None:
    assert foreign_private_reads("def f(session):\n    return session._connector\n") == [
        "2: ._connector"
    ]
    assert foreign_private_reads("class A:\n    def f(self):\n        return self._x\n") == []


def test_every_adapter_exists() -> None:
    assert all(path.is_file() for path in ADAPTERS)
