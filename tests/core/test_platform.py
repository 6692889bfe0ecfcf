"""Reading the platform's answers: the quick status read agrees with the full parse."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.platform import envelope_status, is_timestamp_refusal, platform_status

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(
    status=st.integers(min_value=-(10**9) + 1, max_value=10**9 - 1) | st.text(max_size=3),
    msg=st.text(max_size=20),
    response=JSON,
    spaces=st.sampled_from(["", " ", "\n  "]),
)
def test_the_quick_read_agrees_with_the_parse(
    status: object, msg: str, response: object, spaces: str
) -> None:
    header = {"status": status, "msg": msg}
    body = json.dumps({"responseHeader": header, "response": response}, indent=spaces or None)
    assert envelope_status(body.encode()) == platform_status(body.encode())[0]


@given(st.binary(max_size=80))
def test_any_bytes_read_the_same_either_way(body: bytes) -> None:
    assert envelope_status(body) == platform_status(body)[0]


def test_a_timestamp_refusal_is_recognised() -> None:
    refused = b'{"responseHeader": {"status": 401, "msg": "timestamp expired or invalid"}}'
    assert is_timestamp_refusal(refused)
    assert not is_timestamp_refusal(b'{"responseHeader": {"status": 401, "msg": "sign error"}}')
    assert not is_timestamp_refusal(b'{"responseHeader": {"status": 200, "msg": "timestamp"}}')
