"""The apps registered on the platform and their secrets, rotated as a platform console
rotates one: the old secret stays accepted for a while."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.core.clock import Clock
from gateway.core.verification import Rejected


class Apps:
    def __init__(self, secrets_by_appid: Mapping[str, str], clock: Clock) -> None:
        self.secrets = dict(secrets_by_appid)
        self._clock = clock
        # appid -> (the secret before the last rotation, until when it is still accepted)
        self._previous: dict[str, tuple[str, int]] = {}

    def require(self, appid: str) -> None:
        """Refuses, 404, an appid the platform does not know."""
        if appid not in self.secrets:
            raise Rejected(404, f"unknown appid {appid[:64]!r}")

    def rotate(self, appid: str, secret: str, keep_previous_s: float) -> None:
        """A new secret for the app, as a platform console gives one: the old one is still
        accepted for keep_previous_s, so requests already signed with it do not fail."""
        self.require(appid)
        if not secret:
            raise Rejected(400, "secret is required")
        until = self._clock.now_ms() + int(keep_previous_s * 1000)
        if secret != self.secrets[appid]:
            self._previous[appid] = (self.secrets[appid], until)
            self.secrets[appid] = secret
        elif appid in self._previous:
            # The same secret again: the old one's grace can only get shorter (0 ends it).
            old, old_until = self._previous[appid]
            self._previous[appid] = (old, min(old_until, until))

    def previous_secret(self, appid: str) -> str | None:
        """The app's secret before its last rotation, while it is still accepted."""
        previous = self._previous.get(appid)
        if previous is None or self._clock.now_ms() >= previous[1]:
            return None
        return previous[0]

    def known_secrets(self) -> list[str]:
        """Every secret a request could carry: current ones, and those rotated out."""
        return [*self.secrets.values(), *(old for old, _ in self._previous.values())]
