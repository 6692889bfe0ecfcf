"""The error tree drawn in gateway/core/errors.py is the tree the code has."""

from __future__ import annotations

import json
import re

import pytest

from gateway.core import errors
from gateway.core.errors import GatewayError, envelope, render

_DRAWN = re.compile(r"^[│├└─ ]*(\w+)\s+(\d{3}) (\w+)$")


def all_errors(cls: type[GatewayError] = GatewayError) -> list[type[GatewayError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *all_errors(sub)]
    return found


def drawn() -> dict[str, tuple[int, str, str]]:
    """Class name -> (status, code, parent) as the module docstring draws them."""
    lines = [line for line in (errors.__doc__ or "").splitlines() if _DRAWN.match(line)]
    tree: dict[str, tuple[int, str, str]] = {}
    parents: list[tuple[int, str]] = [(-1, "GatewayError")]
    for line in lines:
        match = _DRAWN.match(line)
        assert match is not None
        depth = (len(line) - len(line.lstrip("│├└─ "))) // 4
        while parents and parents[-1][0] >= depth:
            parents.pop()
        name, status, code = match.groups()
        tree[name] = (int(status), code, parents[-1][1])
        parents.append((depth, name))
    return tree


def test_every_error_class_is_drawn_with_its_status_code_and_parent() -> None:
    tree = drawn()
    classes = all_errors()
    assert sorted(tree) == sorted(cls.__name__ for cls in classes)
    for cls in classes:
        parent = cls.__mro__[1].__name__
        assert tree[cls.__name__] == (cls.status, cls.code, parent), cls.__name__


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in all_errors()]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", all_errors(), ids=lambda cls: cls.__name__)
def test_each_error_renders_the_envelope(cls: type[GatewayError]) -> None:
    error = cls()
    assert json.loads(render(error)) == {
        "responseHeader": {"status": cls.status, "msg": cls.message},
        "response": None,
        "error": cls.code,
    }
    assert error.__doc__, "each error class says when it is raised"


def test_the_platform_shape_has_no_error_code() -> None:
    assert envelope(200, "OK", response={"a": 1}) == {
        "responseHeader": {"status": 200, "msg": "OK"},
        "response": {"a": 1},
    }
