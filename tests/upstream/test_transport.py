"""The interface's two values: the Request an attempt sends, the Answer it gets."""

from __future__ import annotations

import dataclasses

import pytest
from multidict import CIMultiDict

from gateway.upstream.transport import Answer
from tests.upstream.helpers import app_for, request_to


def test_a_request_cannot_change_on_its_way_down() -> None:
    request = request_to(app_for("http://platform.test"), "http://platform.test/neuopenapi/x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.timeout_s = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b'{"responseHeader":{"status":401,"msg":"no"}}', 401, id="refusal"),
        pytest.param(b'{"responseHeader":{"status":200,"msg":"OK"},"response":{}}', 200, id="ok"),
        pytest.param(b"<html>bad gateway</html>", None, id="not the envelope"),
    ],
)
def test_the_platform_status_is_read_from_the_envelope(body: bytes, status: int | None) -> None:
    assert Answer(200, CIMultiDict(), body).platform_status == status


def test_an_answer_counts_one_attempt_unless_told() -> None:
    answer = Answer(200, CIMultiDict(), b"{}")
    assert answer.attempts == 1
    assert dataclasses.replace(answer, attempts=3).attempts == 3
