"""Route labels stay bounded whatever path a caller sends."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.endpoints import ENDPOINTS
from gateway.metrics import OTHER, route_label


@given(st.text())
def test_a_made_up_path_is_other(path: str) -> None:
    assert route_label(path) in {*ENDPOINTS, OTHER}


def test_every_documented_path_is_its_own_route() -> None:
    assert all(route_label(path) == path for path in ENDPOINTS)


def test_a_near_miss_of_a_documented_path_is_other() -> None:
    path = next(iter(ENDPOINTS))
    assert route_label(path + "/") == OTHER
    assert route_label(path.upper()) == OTHER
