"""Secrets never print themselves, and compare in constant time on the bytes sent."""

from __future__ import annotations

from gateway.core.secrets import Secret


def test_a_secret_never_prints_itself() -> None:
    secret = Secret("app-secret-value")
    for shown in (repr(secret), str(secret), f"{secret}", f"{[secret]}"):
        assert "app-secret-value" not in shown
        assert "*" in shown
    assert secret.reveal() == "app-secret-value"


def test_a_secret_matches_only_its_own_value() -> None:
    secret = Secret("token-0123456789")
    assert secret.matches("token-0123456789")
    assert not secret.matches("token-012345678")
    assert not secret.matches("token-01234567890")
    assert not secret.matches("")


def test_bytes_that_are_no_utf8_compare_as_sent_and_never_raise() -> None:
    # A header's undecodable bytes arrive as surrogates: compared as the bytes, not an error.
    sent = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert Secret("café").matches("café")
    assert not Secret("café").matches(sent)
    assert not Secret("token").matches("\udcff")


def test_a_secret_holds_nothing_a_vars_dump_shows() -> None:
    secret = Secret("value")
    assert not hasattr(secret, "__dict__")
