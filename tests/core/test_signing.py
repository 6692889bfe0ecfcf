from __future__ import annotations

import hashlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.core.signing import SECRET_MASK, canonical_string, sign, value_text, verify
from tests.support.platform_double import reference_sign

# The published vector from DESIGN.md, canonical string and sign written out by hand.
PUBLISHED = {
    "appid": "demo-appid",
    "code": "abc123",
    "grantType": "authorization_code",
    "scope": "user.info",
    "timestamp": "1700000000000",
}
PUBLISHED_CANONICAL = (
    "appid=demo-appidcode=abc123grantType=authorization_codescope=user.info"
    "secret=demo-secrettimestamp=1700000000000"
)
PUBLISHED_SIGN = "964bd40923c2f8911560c18cb06f580d3d26436378c11edff3f0691e4db00242"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_published_vector() -> None:
    assert canonical_string(PUBLISHED, "demo-secret") == PUBLISHED_CANONICAL
    assert sign(PUBLISHED, "demo-secret") == PUBLISHED_SIGN


@pytest.mark.parametrize(
    ("params", "canonical"),
    [
        pytest.param(
            {"b": ["x", "y"], "a": None, "c": True, "d": False, "n": 7},
            "a=b=x,yc=trued=falsen=7secret=s",
            id="null is empty, list joined by commas, booleans as Java prints them",
        ),
        pytest.param(
            {"k": "v", "sign": "old", "fileData": "bytes"},
            "k=vsecret=s",
            id="sign and fileData are never signed",
        ),
        pytest.param(
            {"a": "1", "B": "2", "_": "3"},
            "B=2_=3a=1secret=s",
            id="upper case before underscore before lower case, as in Java",
        ),
        pytest.param(
            {"\uffff": "1", "\U00010000": "2"},
            "secret=s\U00010000=2\uffff=1",
            id="a key above U+FFFF sorts before one in U+E000-U+FFFF, by UTF-16 code units",
        ),
        pytest.param(
            {"secret": "caller-supplied", "x": ""},
            "secret=sx=",
            id="a caller's secret entry never stands in for the real one",
        ),
        pytest.param(
            {"text": "a+b&c=d%e 中文"},
            "secret=stext=a+b&c=d%e 中文",
            id="raw values are signed, never URL-encoded",
        ),
        pytest.param({"openIds": []}, "openIds=secret=s", id="an empty list is empty"),
    ],
)
def test_canonical_string_cases(params: dict[str, object], canonical: str) -> None:
    assert canonical_string(params, "s") == canonical  # type: ignore[arg-type]
    assert sign(params, "s") == sha256_hex(canonical)  # type: ignore[arg-type]


def test_masked_canonical_string_never_holds_the_secret() -> None:
    masked = canonical_string(PUBLISHED, SECRET_MASK)
    assert "demo-secret" not in masked
    assert masked == PUBLISHED_CANONICAL.replace("demo-secret", SECRET_MASK)


def test_unpaired_surrogate_is_hashed_as_java_does() -> None:
    # Java's getBytes(UTF_8) writes '?' for an unpaired surrogate.
    assert sign({"k": "\ud800"}, "s") == sign({"k": "?"}, "s")


def test_an_unpaired_surrogate_in_a_key_is_sorted_by_its_code_unit_and_hashed_as_java_does() -> (
    None
):
    # U+D800 alone is one UTF-16 unit, the first of U+10000's two: it sorts before it, and
    # both before U+FFFF; Java's getBytes(UTF_8) writes it as '?'.
    params = {"\uffff": "c", "\U00010000": "b", "\ud800": "a", "\u00e9": "e"}
    canonical = "secret=s\u00e9=e\ud800=a\U00010000=b\uffff=c"
    assert canonical_string(params, "s") == canonical
    assert sign(params, "s") == sha256_hex("secret=s\u00e9=e?=a\U00010000=b\uffff=c")


def test_a_sign_with_an_unpaired_surrogate_is_refused_not_an_error() -> None:
    assert not verify({**PUBLISHED, "sign": "\ud800"}, "demo-secret")
    assert not verify({**PUBLISHED, "sign": PUBLISHED_SIGN[:-1] + "\udfff"}, "demo-secret")


def test_verify_accepts_only_the_exact_sign() -> None:
    signed = {**PUBLISHED, "sign": PUBLISHED_SIGN}
    assert verify(signed, "demo-secret")
    assert not verify(signed, "other-secret")
    assert not verify({**signed, "sign": PUBLISHED_SIGN.upper()}, "demo-secret")
    assert not verify({**signed, "code": "abc124"}, "demo-secret")
    assert not verify(PUBLISHED, "demo-secret")
    assert not verify({**PUBLISHED, "sign": None}, "demo-secret")


keys = st.text(min_size=1, max_size=12).filter(
    lambda key: key not in {"sign", "fileData", "secret"}
)
values = st.text(max_size=20)
param_dicts = st.dictionaries(keys, values, max_size=8)
secrets = st.text(min_size=1, max_size=40)


@given(param_dicts, secrets, st.randoms())
def test_key_order_does_not_matter(params: dict[str, str], secret: str, rng: object) -> None:
    items = list(params.items())
    rng.shuffle(items)  # type: ignore[attr-defined]
    assert sign(dict(items), secret) == sign(params, secret)


@given(param_dicts, secrets)
@example({"\uffff": "a", "\U00010000": "b", "\ue000": "c", "a": "d"}, "s")
def test_agrees_with_an_independent_implementation(params: dict[str, str], secret: str) -> None:
    assert sign(params, secret) == reference_sign(params, secret)


@given(
    keys, st.lists(st.text(alphabet=st.characters(blacklist_characters=","), max_size=8)), secrets
)
def test_a_list_signs_as_its_comma_joined_text(key: str, items: list[str], secret: str) -> None:
    assert sign({key: items}, secret) == sign({key: ",".join(items)}, secret)
    assert value_text(items) == ",".join(items)


@given(param_dicts.filter(bool), values, secrets, st.data())
def test_any_change_to_a_signed_value_changes_the_sign(
    params: dict[str, str], new_value: str, secret: str, data: st.DataObject
) -> None:
    key = data.draw(st.sampled_from(sorted(params)))
    if params[key] == new_value:
        return
    assert sign({**params, key: new_value}, secret) != sign(params, secret)


@given(param_dicts, st.binary(max_size=64).map(lambda raw: raw.decode("latin-1")), secrets)
def test_file_parts_and_sign_never_change_it(
    params: dict[str, str], blob: str, secret: str
) -> None:
    assert sign({**params, "fileData": blob}, secret) == sign(params, secret)
    assert sign({**params, "sign": blob}, secret) == sign(params, secret)


@given(param_dicts, secrets)
def test_verify_round_trips(params: dict[str, str], secret: str) -> None:
    signed = {**params, "sign": sign(params, secret)}
    assert verify(signed, secret)
    assert not verify(signed, secret + "x")
