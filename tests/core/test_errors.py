"""The error tree drawn in gateway/core/errors.py is the tree the code has."""

from __future__ import annotations

import json
import re

import pytest

from gateway.core import errors
from gateway.core.errors import GatewayError, envelope, every_error, render

_DRAWN = re.compile(r"^[│├└─ ]*(\w+)\s+(\d{3}) (\w+)$")


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
    classes = every_error()
    assert sorted(tree) == sorted(cls.__name__ for cls in classes)
    for cls in classes:
        parent = cls.__mro__[1].__name__
        assert tree[cls.__name__] == (cls.status, cls.code, parent), cls.__name__


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in every_error()]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", every_error(), ids=lambda cls: cls.__name__)
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


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        pytest.param("a" * 64, "'" + "a" * 64 + "'", id="64 characters shown whole"),
        pytest.param("a" * 65, "'" + "a" * 64 + "…'", id="65 cut to 64 and marked"),
        pytest.param("k\n\x00\u200b", "'k???'", id="unprintable characters as ?"),
    ],
)
def test_a_name_in_a_message_is_printable_and_at_most_64_characters(name: str, shown: str) -> None:
    assert errors.quoted_name(name) == shown


def test_an_error_has_no_headers_unless_given() -> None:
    assert GatewayError().headers == {}
    assert GatewayError("m", {"Retry-After": "1"}).headers == {"Retry-After": "1"}


def test_a_401_names_the_bearer_scheme_beside_any_other_header() -> None:
    error = errors.Unauthenticated("no token", {"X-A": "1"})
    assert (error.msg, error.headers) == ("no token", {"WWW-Authenticate": "Bearer", "X-A": "1"})
    assert errors.Unauthenticated().headers == {"WWW-Authenticate": "Bearer"}


def test_an_unreachable_upstream_says_whether_the_request_left() -> None:
    assert errors.UpstreamUnreachable().unsent is False
    error = errors.UpstreamUnreachable("refused", {"Retry-After": "2"}, unsent=True)
    assert (error.msg, error.headers, error.unsent) == ("refused", {"Retry-After": "2"}, True)


def test_a_message_renders_as_utf_8_not_as_escapes() -> None:
    assert "\u00e9".encode() in render(errors.InvalidParams("caf\u00e9"))
