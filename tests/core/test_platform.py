"""Reading the platform's answers: the quick status read agrees with the full parse; which
refusals are the platform's refusal of the sign."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.core import signing
from gateway.core.platform import (
    envelope_status,
    is_sign_refusal,
    is_timestamp_refusal,
    platform_status,
    refusal_message,
)
from gateway.core.verification import Rejected, check_signed_request

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


def envelope(status: object, msg: object) -> bytes:
    return json.dumps({"responseHeader": {"status": status, "msg": msg}, "response": None}).encode()


@pytest.mark.parametrize(
    ("http_status", "body"),
    [
        pytest.param(200, envelope(401, "sign error"), id="the sandbox's words, in an HTTP 200"),
        pytest.param(200, envelope(401, "Sign Error"), id="in any case"),
        pytest.param(200, envelope(401, "SIGN_ERROR"), id="as a code"),
        pytest.param(200, envelope(401, "signError: check your secret"), id="in camel case"),
        pytest.param(200, envelope(401, "Invalid signature"), id="called a signature"),
        pytest.param(200, envelope(401, "sign is required"), id="a sign missing"),
        pytest.param(401, envelope(401, "sign error"), id="401 on the wire and in the envelope"),
        pytest.param(401, b"sign error", id="a plain-text 401"),
        pytest.param(401, b'{"error": "invalid sign"}', id="a 401 in another JSON shape"),
        pytest.param(
            200,
            envelope(401, "sign error; the platform signed: accessToken=x" + "appid=a"),
            id="explained, an accessToken among what was signed",
        ),
    ],
)
def test_a_sign_refusal_is_recognised(http_status: int, body: bytes) -> None:
    assert is_sign_refusal(http_status, body)


@pytest.mark.parametrize(
    ("http_status", "body"),
    [
        pytest.param(200, envelope(200, "sign ok"), id="a success"),
        pytest.param(200, envelope(404, "sign error"), id="not a 401"),
        pytest.param(400, envelope(400, "sign error"), id="a 400 on the wire and in the envelope"),
        pytest.param(
            200,
            envelope(401, "invalid accessToken: expired; the user must log in again"),
            id="a refused accessToken",
        ),
        pytest.param(
            200, envelope(401, "accessToken signature invalid"), id="the token's own signature"
        ),
        pytest.param(200, envelope(401, "timestamp expired or invalid"), id="a timestamp"),
        pytest.param(200, envelope(401, "unknown appid 'x'"), id="an unknown appid"),
        pytest.param(200, envelope(401, "design error; signal lost"), id="words holding 'sign'"),
        pytest.param(200, envelope(401, None), id="no message"),
        pytest.param(200, envelope(401, ["sign"]), id="a message that is not text"),
        pytest.param(200, b"sign error", id="a plain-text HTTP 200"),
        pytest.param(401, b"", id="an empty 401"),
    ],
)
def test_other_answers_are_not_sign_refusals(http_status: int, body: bytes) -> None:
    assert not is_sign_refusal(http_status, body)


@given(
    params=st.dictionaries(
        st.sampled_from(["tradeNo", "accessToken", "openId", "code", "amount"]),
        st.text(max_size=12),
    ),
    explain=st.booleans(),
)
@example(params={"accessToken": "eyJ.sign.token"}, explain=True)
def test_the_sandboxs_refusal_of_a_wrong_sign_is_one_whatever_was_signed(
    params: dict[str, str], explain: bool
) -> None:
    """What gateway/core/verification.py (the sandbox, as the platform) says of a sign made
    with another secret is always recognised, explained or not."""
    signed = {**params, "appid": "app", "timestamp": "1700000000000"}
    signed["sign"] = signing.sign(signed, "the-wrong-secret")
    with pytest.raises(Rejected) as refused:
        check_signed_request(signed, {"app": "the-right-secret"}, 1700000000000, explain)
    body = envelope(refused.value.status, refused.value.msg)
    assert is_sign_refusal(200, body)
    # Explained, it names the timestamp parameter too: still not a timestamp refusal (which
    # would send the call once more).
    assert not is_timestamp_refusal(body)


@given(status=st.integers(min_value=100, max_value=599), msg=st.text(max_size=40))
def test_only_a_401_can_be_a_sign_refusal(status: int, msg: str) -> None:
    if status != 401:
        assert not is_sign_refusal(status, envelope(status, msg))


@given(st.binary(max_size=80))
def test_any_bytes_have_a_message_and_a_verdict(body: bytes) -> None:
    assert isinstance(refusal_message(body), str)
    assert isinstance(is_sign_refusal(401, body), bool)


NESTED_TOO_DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(NESTED_TOO_DEEP, id="nested too deeply"),
        pytest.param(
            b'{"responseHeader": {"status": 401, "msg": "sign error"}, "x": '
            + NESTED_TOO_DEEP
            + b"}",
            id="an envelope nested too deeply",
        ),
    ],
)
def test_an_answer_nested_too_deeply_to_parse_is_no_envelope(body: bytes) -> None:
    assert platform_status(body) == (None, None)
    # Read as text, as any body that is not an envelope.
    assert refusal_message(body) == body[:1024].decode()
    assert is_sign_refusal(401, body) == (b"sign error" in body)
    assert not is_sign_refusal(200, body)
    assert not is_timestamp_refusal(body)
