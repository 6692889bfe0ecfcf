"""What an answer's head must say to be relayed: the transfer codings the gateway undoes."""

from __future__ import annotations

import pytest

from gateway.core.errors import UpstreamBadResponse
from gateway.upstream.framing import bad_status, is_chunked, too_large


@pytest.mark.parametrize(
    ("transfer_encoding", "chunked"),
    [
        pytest.param("chunked", True, id="chunked"),
        pytest.param("Chunked ", True, id="any case, spaces"),
        pytest.param("identity, chunked", True, id="identity is no coding"),
        pytest.param("identity", False, id="identity alone"),
        pytest.param("", False, id="empty"),
        pytest.param(" , ", False, id="only commas"),
    ],
)
def test_chunked_or_nothing_is_undone(transfer_encoding: str, chunked: bool) -> None:
    assert is_chunked(transfer_encoding) is chunked


@pytest.mark.parametrize(
    "transfer_encoding",
    [
        pytest.param("gzip", id="gzip"),
        pytest.param("gzip, chunked", id="gzip under chunked"),
        pytest.param("chunked, chunked", id="chunked twice"),
        pytest.param("x" * 500, id="a long unknown one"),
    ],
)
def test_any_other_coding_is_refused_and_named_briefly(transfer_encoding: str) -> None:
    with pytest.raises(UpstreamBadResponse, match="transfer coding") as raised:
        is_chunked(transfer_encoding)
    assert len(raised.value.msg) < 200


def test_the_messages_name_the_status_and_the_limit() -> None:
    assert "HTTP 600" in bad_status(600)
    assert "limits.max_response_bytes (1024)" in too_large(1024)
