"""Which request targets admission takes as plain platform paths."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.errors import InvalidPath
from gateway.egress.admission import checked_path

_SEGMENT = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*")


def plain_by_segments(target: str) -> str | None:
    """The rule spelt out: every segment after the prefix a plain word, none empty or
    starting with a dot."""
    if not target.startswith("/"):
        return None
    path = target.split("?", 1)[0]
    segments = path.removeprefix("/neuopenapi/").split("/")
    return path if all(_SEGMENT.fullmatch(segment) for segment in segments) else None


@given(st.text(st.sampled_from([*"/neuopiab._~-%?&=é\n"]), max_size=30))
def test_a_target_is_plain_when_each_of_its_segments_is(tail: str) -> None:
    for target in ("/neuopenapi/" + tail, tail):
        expected = plain_by_segments(target)
        if expected is None:
            with pytest.raises(InvalidPath):
                checked_path(target)
        else:
            assert checked_path(target) == expected


@pytest.mark.parametrize(
    "target",
    ["/neuopenapi/", "/neuopenapi/a/", "/neuopenapi//a", "/neuopenapi/.a", "/neuopenapi/a\n"],
)
def test_empty_dotted_and_line_broken_segments_are_refused(target: str) -> None:
    with pytest.raises(InvalidPath):
        checked_path(target)
