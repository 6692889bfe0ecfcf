"""Secret: compared in constant time over the bytes sent, never printed."""

from __future__ import annotations

import pytest

from gateway.core.secrets import Secret


def test_a_secret_never_prints_its_value() -> None:
    secret = Secret("orders-token")
    assert repr(secret) == str(secret) == f"{secret}" == "Secret('**********')"
    assert secret.reveal() == "orders-token"


@pytest.mark.parametrize(
    ("presented", "matches"),
    [
        pytest.param("caf\u00e9-token", True, id="the same text"),
        pytest.param("caf\udcc3\udca9-token", True, id="the same bytes, sent undecoded"),
        pytest.param("caf\udce9-token", False, id="Latin-1 bytes for the same text"),
        pytest.param("caf\u00e9-token ", False, id="one more character"),
        pytest.param("", False, id="nothing"),
    ],
)
def test_matches_compares_the_bytes_sent(presented: str, matches: bool) -> None:
    assert Secret("caf\u00e9-token").matches(presented) is matches
