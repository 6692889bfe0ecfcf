from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.core.errors import InvalidJson, InvalidParams, SecretParamRejected
from gateway.core.params import (
    GATEWAY_KEYS,
    _parse_pieces,
    caller_fields,
    check_limits,
    form_encoded,
    is_secret_name,
    joined,
    looks_like_json,
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


MALFORMED = "malformed percent-encoding in the {where}"
NOT_UTF8 = "the {where} is not valid UTF-8 after percent-decoding"


@pytest.mark.parametrize("where", ["form body", "query string"])
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"a=%zz", MALFORMED, id="bad escape"),
        pytest.param(b"a=%4", MALFORMED, id="truncated escape"),
        pytest.param(b"%zz=1", MALFORMED, id="bad escape in a name"),
        pytest.param(b"a=%ff", NOT_UTF8, id="escape that is not UTF-8"),
        pytest.param(b"a=\xff", NOT_UTF8, id="raw byte that is not UTF-8"),
        pytest.param(b"\xff=1", NOT_UTF8, id="raw byte that is not UTF-8 in a name"),
        pytest.param(b"%ff=1", NOT_UTF8, id="escape that is not UTF-8 in a name"),
        pytest.param(b"=1", "a parameter in the {where} has an empty name", id="empty name"),
        pytest.param(b"%41=1&=2", "a parameter in the {where} has an empty name", id="empty too"),
    ],
)
def test_parse_urlencoded_refuses_naming_where(raw: bytes, message: str, where: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        parse_urlencoded(raw, where)
    assert caught.value.msg == message.format(where=where)


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


NOT_AN_OBJECT = 'the JSON body must be an object, e.g. {"tradeNo": "..."}'
NESTED = "JSON key 'ids' holds a nested list or object; lists may hold scalars only"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            b'{"user": {"id": 1}}',
            "JSON key 'user' holds an object; values must be scalars or lists of scalars",
            id="nested object",
        ),
        pytest.param(b'{"ids": [[1]]}', NESTED, id="nested list"),
        pytest.param(b'{"ids": [{"a": 1}]}', NESTED, id="object in list"),
        pytest.param(b"[1, 2]", NOT_AN_OBJECT, id="top-level list"),
        pytest.param(b'"text"', NOT_AN_OBJECT, id="top-level string"),
        pytest.param(
            b"{",
            "the body is not valid JSON "
            "(Expecting property name enclosed in double quotes at line 1 column 2)",
            id="truncated",
        ),
        pytest.param(
            b'{\n  "a": 1,\n  "b" 2\n}',
            "the body is not valid JSON (Expecting ':' delimiter at line 3 column 7)",
            id="the line and column of the problem",
        ),
        pytest.param(
            b'{"a": NaN}',
            "the body is not valid JSON (NaN is not a number the platform accepts)",
            id="NaN",
        ),
        pytest.param(
            b'{"a": -Infinity}',
            "the body is not valid JSON (-Infinity is not a number the platform accepts)",
            id="-Infinity",
        ),
        pytest.param(
            b'{"a": "\\ud800"}',
            "JSON key 'a' holds an unpaired surrogate",
            id="lone surrogate in a value",
        ),
        pytest.param(
            b'{"ids": ["x", "\\udc00"]}',
            "JSON key 'ids' holds an unpaired surrogate",
            id="lone surrogate in a list item",
        ),
        pytest.param(
            b'{"k\\ud800": 1}',
            "JSON key 'k?' holds an unpaired surrogate",
            id="lone surrogate in a key",
        ),
        pytest.param(b'{"": 1}', "a JSON key is empty", id="empty key"),
        pytest.param(b'{"a": "\xff"}', "the JSON body is not valid UTF-8", id="not UTF-8"),
        pytest.param(
            b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "the JSON body nests too deeply: send an object of scalars and lists of scalars",
            id="nested past the parser's recursion limit",
        ),
    ],
)
def test_parse_json_refuses(body: bytes, message: str) -> None:
    with pytest.raises(InvalidJson) as caught:
        parse_json(body)
    assert caught.value.msg == message


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
    with pytest.raises(InvalidParams) as caught:
        parse_json(body, max_pairs=9)
    assert caught.value.msg == "too many parameters (limits.max_params is 9)"
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


@given(st.integers(1, 300))
@example(1)
@example(2)
def test_the_list_length_pre_check_takes_a_list_exactly_at_its_limit(items: int) -> None:
    # n one-character items joined with commas are 2n - 1 characters: the shortest such a
    # list can be, and so the longest the pre-check must let through.
    body = json.dumps({"ids": ["x"] * items}).encode()
    shortest = 2 * items - 1
    assert parse_json(body, max_value_length=shortest) == [("ids", ",".join(["x"] * items))]
    with pytest.raises(InvalidParams) as caught:
        parse_json(body, max_value_length=shortest - 1)
    assert caught.value.msg == (
        f"the value of 'ids' is longer than limits.max_value_length ({shortest - 1})"
    )


@pytest.mark.parametrize(
    "key", ["secret\x00", "\x01secret", "se\u200bcret", "secret\u00ad", "\u00a0secret"]
)
def test_secret_behind_what_java_trims_or_does_not_show_is_refused(key: str) -> None:
    with pytest.raises(SecretParamRejected):
        caller_fields([(key, "x")])


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        pytest.param("secret", True, id="secret"),
        pytest.param("\x00\u017fecret\x1f", True, id="controls around a long-s secret"),
        pytest.param("\x00\u017fecret \u00a0", True, id="spaces after a long-s secret"),
        pytest.param("secret!", False, id="secret! (Java's trim keeps !)"),
        pytest.param('"secret"', False, id="quoted secret"),
        pytest.param("\u017fecret!", False, id="long-s secret!"),
        pytest.param('\u017fecret"', False, id="long-s secret and a quote"),
        pytest.param("secrets", False, id="secrets"),
        pytest.param("\u017fecrets", False, id="long-s secrets"),
        pytest.param("se cret", False, id="a space inside"),
    ],
)
def test_is_secret_name(key: str, secret: bool) -> None:
    assert is_secret_name(key) is secret


@dataclass(frozen=True)
class Limits:
    max_params: int = 3
    max_key_length: int = 4
    max_value_length: int = 5


def limit_refusal(pairs: list[tuple[str, str]], files: int = 0) -> str:
    with pytest.raises(InvalidParams) as caught:
        check_limits(pairs, files, Limits())
    return caught.value.msg


@pytest.mark.parametrize(
    ("pairs", "files"),
    [
        pytest.param([("a", "1")] * 3, 0, id="max_params parameters"),
        pytest.param([("a", "1")] * 2, 1, id="max_params with a file among them"),
        pytest.param([], 3, id="max_params files"),
        pytest.param([("kkkk", "1")], 0, id="a name of max_key_length"),
        pytest.param([("a", "vvvvv")], 0, id="a value of max_value_length"),
        pytest.param([("kkkk", "vvvvv")] * 3, 0, id="all three at their limit"),
    ],
)
def test_check_limits_takes_each_limit_itself(pairs: list[tuple[str, str]], files: int) -> None:
    check_limits(pairs, files, Limits())


@pytest.mark.parametrize(
    ("pairs", "files", "message"),
    [
        pytest.param(
            [("a", "1")] * 4, 0, "too many parameters (4; limits.max_params is 3)", id="one more"
        ),
        pytest.param(
            [("a", "1")] * 3,
            1,
            "too many parameters (4; limits.max_params is 3)",
            id="a file counts as a parameter",
        ),
        pytest.param(
            [("a", "1")] * 2,
            4,
            "too many parameters (6; limits.max_params is 3)",
            id="files count in the number said",
        ),
        pytest.param(
            [("a", "1"), ("kkkkk", "1")],
            0,
            "parameter name 'kkkkk' is longer than limits.max_key_length (4)",
            id="a name one longer",
        ),
        pytest.param(
            [("k", "vvvvvv")],
            0,
            "the value of 'k' is longer than limits.max_value_length (5)",
            id="a value one longer",
        ),
        pytest.param(
            [("k\n" + "x" * 70, "1")],
            0,
            f"parameter name {'k?' + 'x' * 62 + '…'!r} is longer than limits.max_key_length (4)",
            id="a long name shown printable and cut",
        ),
    ],
)
def test_check_limits_refuses_one_past_each_limit(
    pairs: list[tuple[str, str]], files: int, message: str
) -> None:
    assert limit_refusal(pairs, files) == message


@given(
    st.lists(st.tuples(st.text(max_size=6), st.text(max_size=7)), max_size=5),
    st.integers(0, 4),
)
def test_check_limits_refuses_exactly_what_is_over_a_limit(
    pairs: list[tuple[str, str]], files: int
) -> None:
    limits = Limits()
    over = (
        len(pairs) + files > limits.max_params
        or any(len(key) > limits.max_key_length for key, _ in pairs)
        or any(len(value) > limits.max_value_length for _, value in pairs)
    )
    try:
        check_limits(pairs, files, limits)
    except InvalidParams:
        assert over
    else:
        assert not over


@pytest.mark.parametrize(
    ("body", "is_json"),
    [
        pytest.param(b'{"a": 1}', True, id="an object"),
        pytest.param(b"\r\n\t [1]", True, id="a list after white space"),
        pytest.param(b"%7b%22a%22", True, id="a percent-encoded brace"),
        pytest.param(b"%5B1%5D", True, id="a percent-encoded bracket"),
        pytest.param(b"a=1", False, id="a form"),
        pytest.param(b"a={}", False, id="a brace inside a value"),
        pytest.param(b"", False, id="nothing"),
    ],
)
def test_looks_like_json(body: bytes, is_json: bool) -> None:
    assert looks_like_json(body) is is_json


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
@example({"appid": "a", "timestamp": "1", "sign": "f0"})
@example({"a": "1", "text": "x y&z=\u00e9"})
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
