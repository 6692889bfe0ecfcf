"""The platform's users: the demo user a fresh world has, those made on the simulator page,
and every one seen logging in to an app, with the openId each has there. A user is named by a
phone number or a name."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.core.verification import Rejected
from gateway.sandbox.world.apps import Apps
from gateway.sandbox.world.ids import digest, open_id, union_id

PHONE = re.compile(r"^\+?[0-9]{6,15}$")
# user/info's `country` is a calling code, "+86" in the doc's sample.
COUNTRY = re.compile(r"^\+?[0-9]{1,4}$")
DEFAULT_COUNTRY = "+86"
MAX_NAME_CHARS = 64


@dataclass(frozen=True)
class Profile:
    """A user made on the simulator page: what user/info tells about them."""

    name: str
    phone: str
    country: str


# A fresh world's one user, so the simulator's "Open mini app" works at once; the phone the
# README's curl walkthrough logs in with, so both tell of the same person.
DEMO_USER = Profile("Demo User", "13800138000", DEFAULT_COUNTRY)


def phone_of(user: str) -> str:
    """The user's phone number: the one they logged in with, or one made up from the name."""
    if PHONE.fullmatch(user):
        return user.lstrip("+")
    return "1" + str(int(digest("phone", user), 16))[:10]


class Users:
    def __init__(
        self, apps: Apps, on_change: Callable[[str], None], premade: Iterable[Profile] = ()
    ) -> None:
        """`premade`: users there from the start, named by their phone, none logged in."""
        self._apps = apps
        self._on_change = on_change
        # openId -> (appid, user), for each user logged in to an app.
        self._logged_in: dict[str, tuple[str, str]] = {}
        # Every user seen, in order: premade, made on the page, or logged in by name or phone.
        self._seen: dict[str, None] = {}
        self._profiles: dict[str, Profile] = {}
        for profile in premade:
            self._profiles[profile.phone] = profile
            self._seen[profile.phone] = None

    def log_in(self, appid: str, user: str) -> str:
        """The user logged in to the app; their openId there."""
        openid = open_id(appid, user)
        self._logged_in[openid] = (appid, user)
        self._seen[user] = None
        self._on_change("users")
        return openid

    def logged_in_as(self, openid: str) -> tuple[str, str] | None:
        """(appid, user) of the user with this openId, if they logged in."""
        return self._logged_in.get(openid)

    def profile(self, user: str) -> Profile:
        """What user/info tells of a user: made on the page, or made up from the login name."""
        made = self._profiles.get(user)
        if made is not None:
            return made
        nick = user if not PHONE.fullmatch(user) else f"user{user[-4:]}"
        return Profile(nick, phone_of(user), DEFAULT_COUNTRY)

    def create_user(self, name: str, phone: str = "", country: str = "") -> dict[str, Any]:
        """A user with this name, phone and calling code; logging in as `user` (the phone, or
        the name when there is none) is then this user. The same phone again updates it."""
        name, phone, country = name.strip(), phone.strip(), country.strip() or DEFAULT_COUNTRY
        problems = []
        if not name or len(name) > MAX_NAME_CHARS:
            problems.append(f"name is required, at most {MAX_NAME_CHARS} characters")
        if phone and not PHONE.fullmatch(phone):
            problems.append("phone must be 6 to 15 digits, optionally after a +")
        if not COUNTRY.fullmatch(country):
            problems.append("country must be a calling code such as +86 or +966")
        if problems:
            raise Rejected(400, "; ".join(problems))
        user = phone.lstrip("+") or name
        country = "+" + country.lstrip("+")
        self._profiles[user] = Profile(name, phone.lstrip("+") or phone_of(user), country)
        self._seen[user] = None
        self._on_change("users")
        return self.user_view(user)

    def user_view(self, user: str) -> dict[str, Any]:
        profile = self.profile(user)
        openids = {appid: open_id(appid, user) for appid in self._apps.secrets}
        return {
            "user": user,
            "name": profile.name,
            "phone": profile.phone,
            "country": profile.country,
            "unionId": union_id(user),
            "openIds": openids,
            "loggedIn": [appid for appid, openid in openids.items() if openid in self._logged_in],
        }

    def users(self) -> list[dict[str, Any]]:
        """Every user, in the order first seen."""
        return [self.user_view(user) for user in self._seen]

    def require(self, appid: str, openids: Iterable[str]) -> None:
        """Refuses, 400, openIds of no user logged in to this app."""
        strangers = [o for o in openids if self._logged_in.get(o, ("",))[0] != appid]
        if strangers:
            raise Rejected(
                400,
                f"openIds not of this app's users: {', '.join(s[:40] for s in strangers)} "
                "(a user appears once logged in via /sandbox/login)",
            )
