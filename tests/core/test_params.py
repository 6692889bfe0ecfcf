from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from urllib.parse import parse_qsl, quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.errors import InvalidJson, InvalidParams, SecretParamRejected
from gateway.core.params import (
    GATEWAY_KEYS,
    _parse_pieces,
    caller_fields,
    form_encoded,
    joined,
    parse_json,
    parse_urlencoded,
)


@pytest.mark.parametrize(
    ("raw", "pairs"),
    [
        pytest.param(b"a=1&b=2", [("a", "1"), ("b", "2")], id="plain pairs"),
        pytest.param(b"a=x+y&b=%2B%26%3D%25", [("a", "x y"), ("b", "+&=%")], id="plus and escapes"),
        pytest.param(b"a=&b", [("a", ""), ("b", "")], id="empty values kept"),
        pytest.param(b"&&a=1&", [("a", "1")], id="empty pieces skipped"),
        pytest.param(b"k=%E4%B8%AD", [("k", "中")], id="percent-encoded UTF-8"),
        pytest.param("k=中".encode(), [("k", "中")], id="raw UTF-8 in a form body"),
        pytest.param(b"a=1=2", [("a", "1=2")], id="only the first = splits"),
    ],
)
def test_parse_urlencoded(raw: bytes, pairs: list[tuple[str, str]]) -> None:
    assert parse_urlencoded(raw, "query string") == pairs


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"a=%zz", "malformed percent-encoding", id="bad escape"),
        pytest.param(b"a=%4", "malformed percent-encoding", id="truncated escape"),
        pytest.param(b"a=%ff", "not valid UTF-8", id="escape that is not UTF-8"),
        pytest.param(b"a=\xff", "not valid UTF-8", id="raw byte that is not UTF-8"),
        pytest.param(b"=1", "empty name", id="empty name"),
    ],
)
def test_parse_urlencoded_refuses(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidParams, match=message):
        parse_urlencoded(raw, "form body")


@pytest.mark.parametrize(
    ("body", "pairs"),
    [
        pytest.param(b'{"a": "x"}', [("a", "x")], id="string"),
        pytest.param(
            b'{"amount": 100, "rate": 1.50, "big": 12345678901234567890}',
            [("amount", "100"), ("rate", "1.50"), ("big", "12345678901234567890")],
            id="numbers keep their literal text",
        ),
        pytest.param(
            b'{"t": true, "f": false, "n": null}',
            [("t", "true"), ("f", "false"), ("n", "")],
            id="booleans as text, null empty",
        ),
        pytest.param(b'{"openIds": ["a", "b", 3]}', [("openIds", "a,b,3")], id="list joined"),
        pytest.param(b'\xef\xbb\xbf{"a": "1"}', [("a", "1")], id="UTF-8 byte order mark"),
        pytest.param(b'{"a": "1", "a": "2"}', [("a", "1"), ("a", "2")], id="repeated key kept"),
    ],
)
def test_parse_json(body: bytes, pairs: list[tuple[str, str]]) -> None:
    assert parse_json(body) == pairs


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b'{"user": {"id": 1}}', "JSON key 'user' holds an object", id="nested object"),
        pytest.param(b'{"ids": [[1]]}', "JSON key 'ids' holds a nested list", id="nested list"),
        pytest.param(b'{"ids": [{"a": 1}]}', "JSON key 'ids' holds a nested", id="object in list"),
        pytest.param(b"[1, 2]", "must be an object", id="top-level list"),
        pytest.param(b'"text"', "must be an object", id="top-level string"),
        pytest.param(b"{", "not valid JSON", id="truncated"),
        pytest.param(b'{"a": NaN}', "not valid JSON", id="NaN"),
        pytest.param(b'{"a": "\\ud800"}', "unpaired surrogate", id="lone surrogate escape"),
        pytest.param(b'{"": 1}', "empty", id="empty key"),
        pytest.param(b'{"a": "\xff"}', "not valid UTF-8", id="not UTF-8"),
    ],
)
def test_parse_json_refuses(body: bytes, message: str) -> None:
    with pytest.raises(InvalidJson, match=message):
        parse_json(body)


def test_caller_fields_joins_repeats_and_drops_gateway_keys() -> None:
    pairs = [
        ("openIds", "a"),
        ("appid", "forged"),
        ("openIds", "b"),
        ("timestamp", "1"),
        ("sign", "forged"),
        ("title", ""),
    ]
    assert caller_fields(pairs) == {"openIds": "a,b", "title": ""}


@pytest.mark.parametrize("key", ["secret", "Secret", "SECRET"])
def test_caller_fields_refuses_a_secret(key: str) -> None:
    with pytest.raises(SecretParamRejected):
        caller_fields([(key, "x")])


pair_lists = st.lists(st.tuples(st.text(min_size=1), st.text()), max_size=10)


@given(pair_lists)
def test_urlencoded_round_trips(pairs: list[tuple[str, str]]) -> None:
    assert parse_urlencoded(urlencode(pairs).encode(), "form body") == pairs
    raw = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    assert parse_urlencoded(raw.encode(), "query string") == pairs


@given(st.binary(max_size=200))
def test_urlencoded_parser_never_fails_unexpectedly(raw: bytes) -> None:
    try:
        pairs = parse_urlencoded(raw, "form body")
    except InvalidParams:
        return
    assert all(key for key, _ in pairs)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(),
    st.floats(allow_nan=False, allow_infinity=False),
)


@given(st.dictionaries(st.text(min_size=1), st.one_of(json_scalars, st.lists(json_scalars))))
def test_json_objects_of_scalars_are_accepted(document: dict[str, object]) -> None:
    pairs = parse_json(json.dumps(document).encode())
    assert [key for key, _ in pairs] == list(document)


@given(st.binary(max_size=200))
def test_json_parser_only_ever_raises_gateway_errors(raw: bytes) -> None:
    with contextlib.suppress(InvalidJson):
        parse_json(raw)


def test_parsing_stops_at_the_pair_after_the_limit() -> None:
    body = b"a=1&" * 1_000_000
    with pytest.raises(InvalidParams, match="too many parameters"):
        parse_urlencoded(body, "form body", max_pairs=200)
    assert len(parse_urlencoded(b"&&&a=1&&&b=2&&", "form body", max_pairs=2)) == 2


@pytest.mark.parametrize("depth", [3, 1000, 100_000])
def test_deep_json_is_refused(depth: int) -> None:
    with pytest.raises(InvalidJson):
        parse_json(b'{"a":' + b"[" * depth + b"]" * depth + b"}")


def test_json_with_more_keys_than_the_limit_is_refused() -> None:
    body = ("{" + ",".join(f'"k{i}": 1' for i in range(10)) + "}").encode()
    with pytest.raises(InvalidParams, match="too many parameters"):
        parse_json(body, max_pairs=9)
    assert len(parse_json(body, max_pairs=10)) == 10


@pytest.mark.parametrize(
    "key",
    [
        "secret",
        "SECRET",
        " secret ",
        "Secret\t",
        "\u017fecret",
        "\uff53\uff45\uff43\uff52\uff45\uff54",
    ],
)
def test_every_spelling_of_secret_is_refused(key: str) -> None:
    with pytest.raises(SecretParamRejected):
        caller_fields([(key, "x")])


def test_a_json_list_too_long_for_its_value_is_refused_before_it_is_joined() -> None:
    body = b'{"a": [' + b"1," * 100_000 + b"1]}"
    with pytest.raises(InvalidParams, match="max_value_length"):
        parse_json(body, max_value_length=65536)
    assert parse_json(b'{"a": [1, 2]}', max_value_length=3) == [("a", "1,2")]


@pytest.mark.parametrize(
    "key", ["secret\x00", "\x01secret", "se\u200bcret", "secret\u00ad", "\u00a0secret"]
)
def test_secret_behind_what_java_trims_or_does_not_show_is_refused(key: str) -> None:
    with pytest.raises(SecretParamRejected):
        caller_fields([(key, "x")])


unicode_text = st.text(st.characters(exclude_categories=["Cs"]))


@given(st.dictionaries(unicode_text, unicode_text, max_size=10))
def test_form_encoded_is_urlencode_byte_for_byte(fields: dict[str, str]) -> None:
    assert form_encoded(fields) == urlencode(fields)


@given(st.lists(st.tuples(st.text("ab+%", min_size=1), st.text("ab+%=")), max_size=5))
def test_decoding_with_and_without_escapes_agrees_with_the_standard_library(
    pairs: list[tuple[str, str]],
) -> None:
    raw = "&".join(f"{key}={value}" for key, value in pairs).encode()
    try:
        parsed = parse_urlencoded(raw, "form body")
    except InvalidParams:
        return
    assert parsed == parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=True)


def parsed_or_refusal(parse: Callable[..., object], *args: object) -> object:
    try:
        return parse(*args)
    except InvalidParams as exc:
        return str(exc)


@given(st.binary(max_size=300), st.one_of(st.none(), st.integers(0, 20)))
def test_the_plain_text_path_parses_as_the_general_one(raw: bytes, max_pairs: int | None) -> None:
    assert parsed_or_refusal(parse_urlencoded, raw, "form body", max_pairs) == (
        parsed_or_refusal(_parse_pieces, raw, "form body", max_pairs)
    )


@given(st.lists(st.tuples(st.text("ab=", min_size=0), st.text("ab=")), max_size=8))
def test_the_plain_text_path_parses_plain_forms_as_the_general_one(
    pairs: list[tuple[str, str]],
) -> None:
    raw = "&".join(f"{key}={value}" for key, value in pairs).encode()
    for max_pairs in (None, 3):
        assert parsed_or_refusal(parse_urlencoded, raw, "form body", max_pairs) == (
            parsed_or_refusal(_parse_pieces, raw, "form body", max_pairs)
        )


# Mostly characters nothing quotes, so that whole dicts of them (the fast path) come up, and
# now and then one that must be quoted, or that a join could mistake for a separator.
mostly_plain = st.text(st.sampled_from([*"abcXYZ019_.~-"] * 4 + [*"=&+ %/é\x00"]), max_size=12)


@given(st.dictionaries(mostly_plain, mostly_plain, max_size=10))
def test_form_encoded_of_plain_fields_is_urlencode_byte_for_byte(fields: dict[str, str]) -> None:
    assert form_encoded(fields) == urlencode(fields)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "openIds", "appid", "sign", "timestamp"]), st.text()),
        max_size=12,
    )
)
def test_caller_fields_are_the_joined_pairs_without_the_gateways_keys(
    pairs: list[tuple[str, str]],
) -> None:
    fields = caller_fields(pairs)
    expected = joined([(key, value) for key, value in pairs if key not in GATEWAY_KEYS])
    assert fields == expected
    assert list(fields) == list(expected)
