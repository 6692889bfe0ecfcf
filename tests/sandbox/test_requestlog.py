"""The request log's pure parts: masking, the signed pairs, the bound."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.core import signing
from gateway.sandbox.requestlog import (
    MASK,
    MAX_VALUE_CHARS,
    RequestLog,
    masked_canonical,
    masked_params,
    signed_pairs,
)

keys = st.text(min_size=1, max_size=8) | st.sampled_from(["sign", "fileData", "secret", "appid"])


@given(st.dictionaries(keys, st.text(max_size=8), max_size=8))
@example({"\U00010000": "a", "\ue000": "b", "secret": "s", "sign": "x"})
def test_signed_pairs_give_the_canonical_string_with_the_secret_masked(
    params: dict[str, str],
) -> None:
    pairs = signed_pairs(params)
    assert masked_canonical(pairs) == signing.canonical_string(params, MASK)
    assert [value for key, value in pairs if key == "secret"] == [None]


def test_masking_sign_secret_in_any_case_and_secrets_inside_values() -> None:
    params = {"sign": "abc", " SECRET": "s3", "note": "one-top-secret-two", "top-secret": "k"}
    assert masked_params(params, ["top-secret", "", "top"]) == {
        "sign": MASK,
        " SECRET": MASK,
        "note": f"one-{MASK}-two",
        MASK: "k",
    }


def record(log: RequestLog, msg: str = "OK", **params: str) -> dict[str, object]:
    status = 200 if msg == "OK" else 401
    return log.record(
        at=1, method="GET", endpoint="/e", params=params, status=status, msg=msg, secrets=["s3"]
    )


def test_the_log_keeps_the_newest_and_shortens_long_values() -> None:
    log = RequestLog(size=3)
    for n in range(5):
        record(log, n=str(n))
    assert [entry["params"] for entry in log.entries()] == [{"n": "4"}, {"n": "3"}, {"n": "2"}]
    long = record(log, "sign error: x", v="y" * (MAX_VALUE_CHARS + 1))
    assert long["truncated"] is True
    assert long["canonical"] is None
    assert long["params"] == {"v": "y" * MAX_VALUE_CHARS + "…"}


def test_an_explained_sign_error_is_logged_with_the_masked_string() -> None:
    log = RequestLog()
    entry = record(
        log, "sign error: no match; the platform signed: a=s3secret=******", a="s3", sign="z"
    )
    assert entry["msg"] == f"sign error: no match; the platform signed: a={MASK}secret={MASK}"
    assert entry["canonical"] == f"a={MASK}secret={MASK}"
    assert entry["verdict"] == "refused"
