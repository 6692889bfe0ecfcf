"""Notifications and activity cards on users' phones."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import pytest

from gateway.core.verification import Rejected
from gateway.sandbox.world.apps import Apps
from gateway.sandbox.world.ids import open_id
from gateway.sandbox.world.messages import Messages
from gateway.sandbox.world.users import Users
from tests.support.clock import MutableClock

APPID, OTHER_APPID = "app", "other-app"


@dataclass
class Platform:
    clock: MutableClock
    users: Users
    messages: Messages
    changes: list[str] = field(default_factory=list)


@pytest.fixture
def platform() -> Platform:
    clock = MutableClock()
    apps = Apps({APPID: "s", OTHER_APPID: "t"}, clock)
    users = Users(apps, lambda kind: None)
    changes: list[str] = []
    return Platform(clock, users, Messages(apps, users, clock, changes.append), changes)


def notify_params(open_ids: str, **change: str) -> dict[str, str]:
    return {
        "notifyType": "1",
        "openIds": open_ids,
        "title": "Paid",
        "text": "Thanks",
        "navigateType": "2",
        "url": "https://shop.example/o/1",
        "language": "en_US",
        **change,
    }


def activity_params(open_ids: str, **change: str) -> dict[str, str]:
    return {
        "activityId": "act-1",
        "openIds": open_ids,
        "color": "FFFFFF",
        "templateId": "1",
        "title": "Flight",
        "text": "Boarding 10:40",
        "iconUrl": "https://x.example/i.png",
        "status": "1",
        "validityTime": "120",
        "language": "ar_SA",
        **change,
    }


def test_a_notification_reaches_every_open_id_named(platform: Platform) -> None:
    alice = platform.users.log_in(APPID, "alice")
    bob = platform.users.log_in(APPID, "bob")
    assert platform.messages.send_notify(APPID, notify_params(f"{alice},{bob}")) is True
    sent = {
        "notifyType": "1",
        "title": "Paid",
        "text": "Thanks",
        "navigateType": "2",
        "url": "https://shop.example/o/1",
        "link": "",
        "language": "en_US",
        "appId": APPID,
        "ctime": platform.clock.now_ms(),
    }
    for openid in (alice, bob):
        assert platform.messages.inbox(openid) == {
            "openId": openid,
            "notifications": [sent],
            "activities": [],
        }
    assert platform.changes == ["phone"]


@pytest.mark.parametrize("kind", ["notify", "activity"])
def test_messages_to_users_of_another_app_are_refused(platform: Platform, kind: str) -> None:
    theirs = platform.users.log_in(OTHER_APPID, "alice")
    send = (
        functools.partial(platform.messages.send_notify, APPID, notify_params(theirs))
        if kind == "notify"
        else functools.partial(platform.messages.send_activity, APPID, activity_params(theirs))
    )
    with pytest.raises(Rejected) as refused:
        send()
    assert refused.value.status == 400
    assert refused.value.msg.startswith(f"openIds not of this app's users: {theirs}")
    assert platform.messages.inbox(theirs)["notifications"] == []


def test_an_activity_card_lives_for_its_validity_time(platform: Platform) -> None:
    alice = platform.users.log_in(APPID, "alice")
    platform.messages.send_activity(APPID, activity_params(alice))
    [card] = platform.messages.inbox(alice)["activities"]
    now = platform.clock.now_ms()
    assert (card["validityTime"], card["ctime"], card["expiresAt"]) == (120, now, now + 120_000)
    assert (card["appId"], card["path"]) == (APPID, "")
    platform.clock.advance(119.999)
    assert len(platform.messages.inbox(alice)["activities"]) == 1
    platform.clock.advance(0.001)
    assert platform.messages.inbox(alice)["activities"] == []


def test_an_activity_is_replaced_by_its_id_and_removed_with_status_0(platform: Platform) -> None:
    alice = platform.users.log_in(APPID, "alice")
    platform.messages.send_activity(APPID, activity_params(alice))
    platform.messages.send_activity(APPID, activity_params(alice, title="Gate changed"))
    assert [c["title"] for c in platform.messages.inbox(alice)["activities"]] == ["Gate changed"]
    platform.messages.send_activity(APPID, activity_params(alice, status="0"))
    assert platform.messages.inbox(alice)["activities"] == []
    assert platform.changes == ["phone"] * 3


def test_the_phone_shows_every_apps_messages_newest_first(platform: Platform) -> None:
    here = platform.users.log_in(APPID, "alice")
    there = platform.users.log_in(OTHER_APPID, "alice")
    platform.messages.send_notify(APPID, notify_params(here, title="First"))
    platform.messages.send_notify(APPID, notify_params(here, title="Same millisecond"))
    platform.clock.advance(1)
    platform.messages.send_notify(OTHER_APPID, notify_params(there, title="Last"))
    platform.messages.send_activity(APPID, activity_params(here))
    phone = platform.messages.phone("alice")
    assert phone["user"] == "alice"
    assert [(n["title"], n["key"]) for n in phone["notifications"]] == [
        ("Last", f"{there}:0"),
        ("Same millisecond", f"{here}:1"),
        ("First", f"{here}:0"),
    ]
    assert [a["key"] for a in phone["activities"]] == [f"{APPID}:act-1"]
    assert platform.messages.phone("bob") == {"user": "bob", "notifications": [], "activities": []}
    assert open_id(APPID, "alice") == here
