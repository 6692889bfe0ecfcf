"""Secret and token files, watched: one that changes is put in force without a signal.

Every `secrets.watch_s` seconds each apps.<name>.secret_file, its
callbacks.signing_secret_file (and _previous_file) and callers.<name>.token_file of the config
in force is read anew and its content compared with the value in force, so a file
written in place and one swapped by a rename or a symlink flip (Kubernetes mounts a secret as
`..data` -> `..2026_...`, and flips `..data`) are both seen: reading follows the links, and a
modification time alone would miss a swap to an older file. A new value is handed to
`put_in_force`, which takes the path a reload takes (runtime/reload.py).

A file that is empty, unreadable, holds a caller token too short or another caller's, or a
signing secret Standard Webhooks cannot read, is refused: the value in force stays, and a
WARNING names the key, the file and why, once for
each new reason rather than at every reading; once the file is good again it is taken.

One process watches: a single gateway its own files, and with `workers: N` the supervisor,
which hands what changed to every worker (a worker never reads them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from gateway import logs
from gateway.config.credentials import (
    PREVIOUS_SIGNING_SECRET,
    SIGNING_SECRET,
    read_credential,
    signing_secret_problem,
)
from gateway.config.live import LiveConfig
from gateway.config.load import caller_with_token
from gateway.config.model import App, Config, CredentialSource
from gateway.config.schema import MIN_CALLER_TOKEN_LENGTH
from gateway.core.clock import Clock
from gateway.core.secrets import Secret

log = logs.logger("neu_gateway")


@dataclass(frozen=True)
class Change:
    """A secret or token file that now holds `value`."""

    source: CredentialSource
    value: Secret


# A file's reading: its value, or why it was refused.
Reading = Secret | str


def rotated(config: Config, changes: Iterable[Change]) -> Config:
    """`config` with each change's value in force; a change whose key a reload has since given
    another source (or removed) is left out."""
    apps, callers = dict(config.apps), dict(config.callers)
    for change in changes:
        source = change.source
        if source not in config.credential_sources:
            continue
        if source.of_an_app and source.name in apps:
            apps[source.name] = _with(apps[source.name], source.what, change.value)
        elif not source.of_an_app and source.name in callers:
            callers[source.name] = replace(callers[source.name], token=change.value)
    return replace(config, apps=apps, callers=callers)


def _with(app: App, what: str, value: Secret) -> App:
    if what == "secret":
        return replace(app, secret=value)
    # A signing secret: its place among the app's (current first, then the previous one).
    index = 0 if what == SIGNING_SECRET else 1
    signing = list(app.signing_secrets)
    if index < len(signing):
        signing[index] = value
    return replace(app, signing_secrets=tuple(signing))


def watched(config: Config) -> list[CredentialSource]:
    return [source for source in config.credential_sources if source.file is not None]


def read(sources: Sequence[CredentialSource]) -> dict[CredentialSource, Reading]:
    """Each file's value, or why it cannot be taken (blocking: run it in a thread)."""
    readings: dict[CredentialSource, Reading] = {}
    for source in sources:
        problems: list[str] = []
        value = read_credential(source.owner, source.what, None, source.file, None, {}, problems)
        if value is None:
            readings[source] = problems[0]
        elif source.what in (SIGNING_SECRET, PREVIOUS_SIGNING_SECRET) and (
            reason := signing_secret_problem(value)
        ):
            readings[source] = f"{source.key}: {source.file}: {reason}"
        elif not source.of_an_app and len(value.reveal()) < MIN_CALLER_TOKEN_LENGTH:
            readings[source] = (
                f"{source.key}: {source.file} holds a token shorter than "
                f"{MIN_CALLER_TOKEN_LENGTH} characters"
            )
        else:
            readings[source] = value
    return readings


def in_force(config: Config, source: CredentialSource) -> Secret:
    if source.what == SIGNING_SECRET:
        return config.apps[source.name].signing_secrets[0]
    if source.what == PREVIOUS_SIGNING_SECRET:
        return config.apps[source.name].signing_secrets[1]
    if source.of_an_app:
        return config.apps[source.name].secret
    return config.callers[source.name].token


class SecretFiles:
    """The watch over the secret and token files of the config in force `live`."""

    def __init__(
        self,
        live: LiveConfig,
        clock: Clock,
        watch_s: float,
        put_in_force: Callable[[list[Change]], None],
    ) -> None:
        self._live = live
        self._clock = clock
        self._watch_s = watch_s
        self._put_in_force = put_in_force
        # The reason each refused file was last warned of, until it is good again.
        self._refused: dict[str, str] = {}

    async def run(self) -> None:
        """Reads the files every watch_s seconds, until cancelled."""
        while True:
            await self._clock.sleep(self._watch_s)
            try:
                await self.check()
            except Exception as exc:
                # A watch that died would leave every later rotation silently ignored.
                # Named by its type only: the exception may quote a file's content.
                log.error(
                    "secret and token files: a reading failed (%s); watching on", type(exc).__name__
                )

    async def check(self) -> list[Change]:
        """One reading of every file; what changed is put in force, and returned."""
        sources = watched(self._live.current)
        if not sources:
            return []
        readings = await asyncio.to_thread(read, sources)
        # No await from here on: what is built is built of the config in force now, so a
        # reload finished while the files were read is not undone.
        changes = self._changes(self._live.current, readings)
        if changes:
            self._put_in_force(changes)
        return changes

    def _changes(self, current: Config, readings: dict[CredentialSource, Reading]) -> list[Change]:
        changes: list[Change] = []
        for source in watched(current):
            reading = readings.get(source)
            if reading is None:
                continue  # a reload named this file meanwhile: read at the next turn
            if isinstance(reading, str):
                self._refuse(source, reading)
                continue
            twin = self._twin(current, source, reading)
            if twin is not None:
                self._refuse(source, f"{source.key}: {source.file} holds the token of {twin}")
                continue
            was_refused = self._refused.pop(source.key, None) is not None
            if not in_force(current, source).matches(reading.reveal()):
                changes.append(Change(source, reading))
            elif was_refused:
                # Its warning said the value in force stays: say when the file agrees again.
                log.info(
                    "%s: %s holds a good %s again, the one in force",
                    source.key,
                    source.file,
                    source.what,
                )
        if changes:
            # Before anything could log them.
            logs.REDACTION.add_secrets(change.value.reveal() for change in changes)
        return changes

    @staticmethod
    def _twin(current: Config, source: CredentialSource, value: Secret) -> str | None:
        """The other caller that has this token: each caller must keep its own."""
        if source.of_an_app:
            return None
        twin = caller_with_token(current.callers, value, besides=source.name)
        return None if twin is None else f"callers.{twin}"

    def _refuse(self, source: CredentialSource, reason: str) -> None:
        if self._refused.get(source.key) == reason:
            return
        self._refused[source.key] = reason
        log.warning(
            "%s; the %s in force stays until the file holds a good one", reason, source.what
        )
