from __future__ import annotations

import pytest

from gateway.core.hosts import host_name, is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("localhost.example", False),
        ("127.0.0.1.nip.example", False),
        ("2130706433", False),
        ("", False),
    ],
)
def test_loopback_is_a_name_or_an_address_not_what_a_name_resolves_to(
    host: str, loopback: bool
) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("Backend.Internal", "backend.internal"),
        (" backend ", "backend"),
        ("10.0.0.5", "10.0.0.5"),
        ("[FD00:0::1]", "fd00::1"),
        ("fd00:0:0::1", "fd00::1"),
        ("http://x", None),
        ("x:80", None),
        ("*.corp", None),
        ("a/b", None),
        ("user@x", None),
        ("a..b", None),
        ("-a", None),
        ("", None),
    ],
)
def test_a_host_has_one_spelling_as_urllib_gives_it(value: str, host: str | None) -> None:
    assert host_name(value) == host
