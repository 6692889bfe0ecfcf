"""Messages to users' phones: notifications (notify/sendNotify) and activity cards on the home
page (activity/sendActivity), which live for their validityTime."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.core.clock import Clock
from gateway.sandbox.world.apps import Apps
from gateway.sandbox.world.ids import open_id
from gateway.sandbox.world.users import Users

NOTIFICATION_FIELDS = ("notifyType", "title", "text", "navigateType", "url", "link", "language")
ACTIVITY_FIELDS = (
    "activityId",
    "color",
    "templateId",
    "title",
    "text",
    "iconUrl",
    "path",
    "language",
)


class Messages:
    def __init__(
        self, apps: Apps, users: Users, clock: Clock, on_change: Callable[[str], None]
    ) -> None:
        self._apps = apps
        self._users = users
        self._clock = clock
        self._on_change = on_change
        self._notifications: dict[str, list[dict[str, Any]]] = {}
        # (appid, activityId, openId) -> the card
        self._activities: dict[tuple[str, str, str], dict[str, Any]] = {}

    def send_notify(self, appid: str, params: Mapping[str, str]) -> bool:
        """notify/sendNotify: one notification to each of the openIds."""
        openids = params["openIds"].split(",")
        self._users.require(appid, openids)
        notification: dict[str, Any] = {name: params.get(name, "") for name in NOTIFICATION_FIELDS}
        notification.update(appId=appid, ctime=self._clock.now_ms())
        for openid in openids:
            self._notifications.setdefault(openid, []).append(notification)
        self._on_change("phone")
        return True

    def send_activity(self, appid: str, params: Mapping[str, str]) -> bool:
        """activity/sendActivity: the card for each of the openIds, put up or replaced; with
        status 0, taken down."""
        openids = params["openIds"].split(",")
        self._users.require(appid, openids)
        now = self._clock.now_ms()
        for openid in openids:
            key = (appid, params["activityId"], openid)
            if params["status"] == "0":
                # The doc: a message sent with status 0 is removed.
                self._activities.pop(key, None)
                continue
            activity: dict[str, Any] = {name: params.get(name, "") for name in ACTIVITY_FIELDS}
            activity.update(
                appId=appid,
                validityTime=int(params["validityTime"]),
                ctime=now,
                expiresAt=now + int(params["validityTime"]) * 1000,
            )
            self._activities[key] = activity
        self._on_change("phone")
        return True

    def inbox(self, openid: str) -> dict[str, Any]:
        """What one openId was sent: every notification, and the cards still live."""
        now = self._clock.now_ms()
        live = [
            activity
            for (_, _, owner), activity in self._activities.items()
            if owner == openid and activity["expiresAt"] > now
        ]
        return {
            "openId": openid,
            "notifications": list(self._notifications.get(openid, [])),
            "activities": live,
        }

    def phone(self, user: str) -> dict[str, Any]:
        """The user's phone screen, across every app: notifications newest first (each with a
        `key` that stays the same), then live activity cards, newest first."""
        notifications: list[dict[str, Any]] = []
        activities: list[dict[str, Any]] = []
        for appid in self._apps.secrets:
            openid = open_id(appid, user)
            for index, notification in enumerate(self._notifications.get(openid, [])):
                notifications.append({**notification, "key": f"{openid}:{index}"})
            for activity in self.inbox(openid)["activities"]:
                activities.append({**activity, "key": f"{appid}:{activity['activityId']}"})
        return {
            "user": user,
            # Stable sorts of the reversed lists: of two in the same millisecond, the later first.
            "notifications": sorted(reversed(notifications), key=lambda n: -n["ctime"]),
            "activities": sorted(reversed(activities), key=lambda a: -a["ctime"]),
        }
