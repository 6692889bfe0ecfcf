"""The registered apps and their secrets, rotated as a platform console rotates one."""

from __future__ import annotations

import pytest

from gateway.core.verification import Rejected
from gateway.sandbox.world.apps import Apps
from tests.support.clock import MutableClock

APPID, OTHER_APPID = "app", "other-app"


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def apps(clock: MutableClock) -> Apps:
    return Apps({APPID: "old", OTHER_APPID: "other"}, clock)


def test_a_rotated_out_secret_is_accepted_for_keep_previous_s(
    apps: Apps, clock: MutableClock
) -> None:
    apps.rotate(APPID, "new", keep_previous_s=60)
    assert apps.secrets == {APPID: "new", OTHER_APPID: "other"}
    assert apps.previous_secret(APPID) == "old"
    assert sorted(apps.known_secrets()) == ["new", "old", "other"]
    clock.advance(59.999)
    assert apps.previous_secret(APPID) == "old"
    clock.advance(0.001)
    assert apps.previous_secret(APPID) is None
    assert apps.previous_secret(OTHER_APPID) is None


def test_the_same_secret_again_can_only_shorten_the_old_ones_grace(
    apps: Apps, clock: MutableClock
) -> None:
    apps.rotate(APPID, "new", keep_previous_s=60)
    apps.rotate(APPID, "new", keep_previous_s=600)
    clock.advance(60)
    assert apps.previous_secret(APPID) is None
    apps.rotate(APPID, "newer", keep_previous_s=60)
    apps.rotate(APPID, "newer", keep_previous_s=0)
    assert apps.previous_secret(APPID) is None
    assert apps.secrets[APPID] == "newer"


def test_a_second_rotation_replaces_the_previous_secret(apps: Apps) -> None:
    apps.rotate(APPID, "second", keep_previous_s=60)
    apps.rotate(APPID, "third", keep_previous_s=60)
    assert apps.previous_secret(APPID) == "second"
    assert "old" not in apps.known_secrets()


@pytest.mark.parametrize(
    ("appid", "secret", "status", "msg"),
    [
        pytest.param("nope", "s", 404, "unknown appid 'nope'", id="unknown app"),
        pytest.param("x" * 80, "s", 404, f"unknown appid {'x' * 64!r}", id="long appid cut"),
        pytest.param(APPID, "", 400, "secret is required", id="no secret"),
    ],
)
def test_a_rotation_refused(apps: Apps, appid: str, secret: str, status: int, msg: str) -> None:
    with pytest.raises(Rejected) as refused:
        apps.rotate(appid, secret, keep_previous_s=60)
    assert (refused.value.status, refused.value.msg) == (status, msg)
    assert apps.secrets[APPID] == "old"


def test_require_passes_a_known_app(apps: Apps) -> None:
    apps.require(APPID)
    with pytest.raises(Rejected):
        apps.require("nope")
