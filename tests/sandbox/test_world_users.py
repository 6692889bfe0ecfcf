"""The platform's users: made on the simulator page or seen logging in, each with an openId
per app."""

from __future__ import annotations

import pytest

from gateway.core.verification import Rejected
from gateway.sandbox.world.apps import Apps
from gateway.sandbox.world.ids import open_id, union_id
from gateway.sandbox.world.users import DEMO_USER, Profile, Users, phone_of
from tests.support.clock import MutableClock

APPID, OTHER_APPID = "app", "other-app"


@pytest.fixture
def changes() -> list[str]:
    return []


@pytest.fixture
def users(changes: list[str]) -> Users:
    return Users(Apps({APPID: "s", OTHER_APPID: "t"}, MutableClock()), changes.append)


def test_logging_in_registers_the_users_open_id_in_that_app(
    users: Users, changes: list[str]
) -> None:
    assert users.log_in(APPID, "alice") == open_id(APPID, "alice")
    assert users.logged_in_as(open_id(APPID, "alice")) == (APPID, "alice")
    assert users.logged_in_as(open_id(OTHER_APPID, "alice")) is None
    assert changes == ["users"]


def test_premade_users_are_there_from_the_start_quietly_and_logged_in_nowhere() -> None:
    changes: list[str] = []
    users = Users(Apps({APPID: "s"}, MutableClock()), changes.append, premade=[DEMO_USER])
    assert [(u["user"], u["name"], u["loggedIn"]) for u in users.users()] == [
        (DEMO_USER.phone, DEMO_USER.name, [])
    ]
    assert users.profile(DEMO_USER.phone) == DEMO_USER
    assert users.logged_in_as(open_id(APPID, DEMO_USER.phone)) is None
    assert changes == []
    # Logging in by the phone is this user; the page may change them like any other.
    users.log_in(APPID, DEMO_USER.phone)
    users.create_user("Zhang Wei", DEMO_USER.phone)
    assert [(u["user"], u["name"], u["loggedIn"]) for u in users.users()] == [
        (DEMO_USER.phone, "Zhang Wei", [APPID])
    ]


def test_a_login_name_makes_up_a_profile() -> None:
    users = Users(Apps({}, MutableClock()), lambda kind: None)
    assert users.profile("alice") == Profile("alice", phone_of("alice"), "+86")
    assert users.profile("+966500000001") == Profile("user0001", "966500000001", "+86")


def test_a_made_up_phone_is_eleven_digits_and_stable() -> None:
    made_up = phone_of("alice")
    assert (len(made_up), made_up.isdigit(), made_up[0]) == (11, True, "1")
    assert phone_of("alice") == made_up != phone_of("bob")
    assert phone_of("+13800138000") == "13800138000"


def test_a_user_made_on_the_page_is_named_by_phone_or_name(
    users: Users, changes: list[str]
) -> None:
    made = users.create_user(" Alice ", "+966500000001", "966")
    assert made == {
        "user": "966500000001",
        "name": "Alice",
        "phone": "966500000001",
        "country": "+966",
        "unionId": union_id("966500000001"),
        "openIds": {
            APPID: open_id(APPID, "966500000001"),
            OTHER_APPID: open_id(OTHER_APPID, "966500000001"),
        },
        "loggedIn": [],
    }
    assert users.create_user("Bob")["user"] == "Bob"
    assert users.profile("Bob") == Profile("Bob", phone_of("Bob"), "+86")
    assert changes == ["users", "users"]


def test_users_are_listed_in_the_order_first_seen_and_the_same_phone_updates(
    users: Users,
) -> None:
    users.create_user("Bob")
    users.log_in(APPID, "13800138000")
    users.create_user("Carol", "13800138000", "+966")
    assert [(u["user"], u["name"], u["country"], u["loggedIn"]) for u in users.users()] == [
        ("Bob", "Bob", "+86", []),
        ("13800138000", "Carol", "+966", [APPID]),
    ]


@pytest.mark.parametrize(
    ("name", "phone", "country", "msg"),
    [
        pytest.param("", "", "", "name is required, at most 64 characters", id="no name"),
        pytest.param("x" * 65, "", "", "name is required, at most 64 characters", id="long"),
        pytest.param(
            "Al", "12ab", "", "phone must be 6 to 15 digits, optionally after a +", id="phone"
        ),
        pytest.param(
            "Al", "", "Saudi", "country must be a calling code such as +86 or +966", id="country"
        ),
        pytest.param(
            " ",
            "12345",
            "+12345",
            "name is required, at most 64 characters; "
            "phone must be 6 to 15 digits, optionally after a +; "
            "country must be a calling code such as +86 or +966",
            id="every problem at once",
        ),
    ],
)
def test_a_user_refused(users: Users, name: str, phone: str, country: str, msg: str) -> None:
    with pytest.raises(Rejected) as refused:
        users.create_user(name, phone, country)
    assert (refused.value.status, refused.value.msg) == (400, msg)
    assert users.users() == []


def test_the_longest_name_and_phone_are_taken(users: Users) -> None:
    made = users.create_user("x" * 64, "+" + "1" * 15, "+1234")
    assert (made["name"], made["phone"], made["country"]) == ("x" * 64, "1" * 15, "+1234")


def test_only_the_apps_own_users_pass(users: Users) -> None:
    mine = users.log_in(APPID, "alice")
    theirs = users.log_in(OTHER_APPID, "bob")
    users.require(APPID, [mine])
    with pytest.raises(Rejected) as refused:
        users.require(APPID, [mine, theirs, "s" * 50])
    assert (refused.value.status, refused.value.msg) == (
        400,
        f"openIds not of this app's users: {theirs}, {'s' * 40} "
        "(a user appears once logged in via /sandbox/login)",
    )
