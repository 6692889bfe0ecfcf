"""Which of the platform's answer headers are relayed to the caller."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gateway.upstream.headers import end_to_end_headers, has_control_character


def relayed(*pairs: tuple[str, str]) -> list[tuple[str, str]]:
    return list(end_to_end_headers(CIMultiDict(pairs)).items())


def test_end_to_end_headers_are_kept_in_order_with_repeats() -> None:
    assert relayed(
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=1"),
        ("X-Trace", "t"),
        ("Set-Cookie", "b=2"),
    ) == [
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=1"),
        ("X-Trace", "t"),
        ("Set-Cookie", "b=2"),
    ]


def test_hop_by_hop_and_reframed_headers_stay_behind() -> None:
    assert relayed(
        ("Connection", "keep-alive"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("content-length", "12"),
        ("Content-Encoding", "gzip"),
        ("Upgrade", "h2c"),
        ("Proxy-Authenticate", "Basic"),
        ("X-Kept", "yes"),
    ) == [("X-Kept", "yes")]


def test_headers_named_in_connection_stay_behind_in_any_case_and_spacing() -> None:
    assert relayed(
        ("Connection", "close, X-Hop"),
        ("Connection", " x-other ,keep-alive"),
        ("x-hop", "1"),
        ("X-OTHER", "2"),
        ("X-Kept", "3"),
    ) == [("X-Kept", "3")]


def test_utf8_is_relayed_and_undecodable_bytes_are_not() -> None:
    undecodable = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert relayed(("X-Name", "café"), ("X-Odd", undecodable), (f"X-{undecodable}", "1")) == [
        ("X-Name", "café")
    ]


@pytest.mark.parametrize(
    ("value", "control"),
    [
        pytest.param("a\tb", False, id="tab allowed"),
        pytest.param("plain", False, id="plain"),
        pytest.param("a\x01b", True, id="SOH"),
        pytest.param("a\nb", True, id="line feed"),
        pytest.param("a\x7fb", True, id="DEL"),
    ],
)
def test_a_control_character_in_a_value_is_found(value: str, control: bool) -> None:
    assert has_control_character(CIMultiDict({"X-A": "ok", "X-B": value})) is control
