"""The watch over secret and token files: what a reading finds changed, refused or the same."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

import pytest

from gateway.config.credential_files import MAX_CREDENTIAL_FILE_BYTES
from gateway.config.live import LiveConfig
from gateway.config.load import from_mapping
from gateway.config.model import Config
from gateway.core.secrets import Secret
from gateway.runtime.secret_files import Change, SecretFiles, rotated
from tests.config.documents import app
from tests.support.clock import MutableClock
from tests.support.waiting import until

TOKEN_A = "token-of-caller-a-0123456789"
TOKEN_B = "token-of-caller-b-0123456789"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def config_with_files(directory: Path, **extra: object) -> Config:
    secret = write(directory / "secret", "first-secret\n")
    token_a = write(directory / "token-a", TOKEN_A)
    token_b = write(directory / "token-b", TOKEN_B)
    document = {
        "apps": {"demo": app(secret_env=None, secret_file=str(secret))},
        "callers": {
            "a": {"token_file": str(token_a), "apps": ["demo"], "allow": ["* /neuopenapi/*"]},
            "b": {"token_file": str(token_b), "apps": ["demo"], "allow": ["* /neuopenapi/*"]},
        },
        **extra,
    }
    return from_mapping(document, {})


class Watch:
    """A SecretFiles over a LiveConfig, recording what it put in force (and putting it)."""

    def __init__(self, config: Config, clock: MutableClock | None = None) -> None:
        self.live = LiveConfig(config, time.time())
        self.taken: list[list[Change]] = []
        self.files = SecretFiles(self.live, clock or MutableClock(), 5.0, self.take)

    def take(self, changes: list[Change]) -> None:
        self.taken.append(changes)
        self.live.swap(rotated(self.live.current, changes), time.time())

    def secret(self) -> str:
        return self.live.current.apps["demo"].secret.reveal()


@pytest.fixture
def watch(tmp_path: Path) -> Watch:
    return Watch(config_with_files(tmp_path))


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_a_file_unchanged_changes_nothing(watch: Watch) -> None:
    assert await watch.files.check() == []
    assert watch.taken == []


async def test_a_secret_written_in_place_is_put_in_force(watch: Watch, tmp_path: Path) -> None:
    write(tmp_path / "secret", "second-secret\n")
    [change] = await watch.files.check()
    assert change.source.key == "apps.demo.secret_file"
    assert change.value.reveal() == "second-secret"
    assert watch.secret() == "second-secret"
    assert await watch.files.check() == [], "taken once"


async def test_a_symlink_flipped_as_kubernetes_does_is_followed(tmp_path: Path) -> None:
    # A mounted secret: secret -> ..data/secret, ..data -> ..<timestamp>; an update writes a
    # new timestamped directory and renames a new ..data link over the old one.
    mount = tmp_path / "mount"
    first = mount / "..2026_01_01"
    first.mkdir(parents=True)
    write(first / "secret", "first-secret\n")
    (mount / "..data").symlink_to(first.name)
    (mount / "secret").symlink_to("..data/secret")
    document = {"apps": {"demo": app(secret_env=None, secret_file=str(mount / "secret"))}}
    watch = Watch(from_mapping(document, {}))
    second = mount / "..2026_01_02"
    second.mkdir()
    write(second / "secret", "flipped-secret\n")
    (mount / "..data_tmp").symlink_to(second.name)
    os.replace(mount / "..data_tmp", mount / "..data")
    [change] = await watch.files.check()
    assert change.value.reveal() == "flipped-secret"
    assert watch.secret() == "flipped-secret"


async def test_a_file_renamed_over_the_old_one_is_taken(watch: Watch, tmp_path: Path) -> None:
    os.replace(write(tmp_path / "secret.new", "renamed-secret"), tmp_path / "secret")
    await watch.files.check()
    assert watch.secret() == "renamed-secret"


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda path: path.write_text(" \n\t"), "is empty"),
        (lambda path: path.unlink(), "(No such file or directory)"),
        (lambda path: (path.unlink(), path.mkdir()), "(not a regular file)"),
        (lambda path: path.write_bytes(b"\xff\xfe"), "(not UTF-8 text)"),
        (
            lambda path: path.write_bytes(b"x" * (MAX_CREDENTIAL_FILE_BYTES + 1)),
            f"(larger than {MAX_CREDENTIAL_FILE_BYTES} bytes)",
        ),
    ],
    ids=["empty", "gone", "a directory", "not text", "too large"],
)
async def test_a_file_that_cannot_be_taken_keeps_the_secret_and_warns_once(
    watch: Watch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    spoil: object,
    reason: str,
) -> None:
    path = tmp_path / "secret"
    spoil(path)  # type: ignore[operator]
    for _ in range(3):
        assert await watch.files.check() == []
    assert watch.secret() == "first-secret"
    [warning] = warnings_of(caplog)
    assert warning.startswith(f"apps.demo.secret_file: {path}") or warning.startswith(
        f"apps.demo.secret_file: cannot read {path}"
    )
    assert reason in warning
    assert warning.endswith("; the secret in force stays until the file holds a good one")
    # Good again: taken, and a later spoiling is warned of anew.
    if path.is_dir():
        path.rmdir()
    write(path, "good-again\n")
    await watch.files.check()
    assert watch.secret() == "good-again"
    path.write_text("")
    await watch.files.check()
    assert len(warnings_of(caplog)) == 2
    assert "first-secret" not in caplog.text
    assert "good-again" not in caplog.text


async def test_a_fifo_in_place_of_the_file_is_refused_without_waiting_for_a_writer(
    watch: Watch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "secret"
    path.unlink()
    os.mkfifo(path)
    try:
        async with asyncio.timeout(5):
            assert await watch.files.check() == []
    finally:
        # Had the reading blocked, its thread waits for a writer: one that comes and goes
        # lets it end, so the test process can exit.
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert watch.secret() == "first-secret"
    [warning] = warnings_of(caplog)
    assert f"cannot read {path} (not a regular file)" in warning


async def test_a_refusal_for_another_reason_is_warned_of_again(
    watch: Watch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "secret"
    path.write_text("")
    await watch.files.check()
    path.unlink()
    await watch.files.check()
    empty, gone = warnings_of(caplog)
    assert "is empty" in empty
    assert "No such file" in gone


async def test_a_caller_token_file_is_watched_too(watch: Watch, tmp_path: Path) -> None:
    write(tmp_path / "token-a", "a-new-token-of-caller-a-0123")
    [change] = await watch.files.check()
    assert change.source.key == "callers.a.token_file"
    assert watch.live.current.callers["a"].token.reveal() == "a-new-token-of-caller-a-0123"
    assert watch.live.current.callers["b"].token.reveal() == TOKEN_B


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("tiny-tok", "holds a token shorter than 16 characters"),
        (TOKEN_B, "holds the token of callers.b"),
    ],
    ids=["too short", "another caller's"],
)
async def test_a_token_a_start_would_refuse_is_refused(
    watch: Watch, tmp_path: Path, caplog: pytest.LogCaptureFixture, token: str, reason: str
) -> None:
    write(tmp_path / "token-a", token)
    assert await watch.files.check() == []
    assert watch.live.current.callers["a"].token.reveal() == TOKEN_A
    [warning] = warnings_of(caplog)
    assert warning.startswith(f"callers.a.token_file: {tmp_path / 'token-a'} {reason}")
    assert token not in caplog.text


async def test_what_a_reload_swapped_in_while_the_files_were_read_is_not_undone(
    watch: Watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "secret", "second-secret")
    # The reload moves the app's secret to the environment: the file's reading is not taken.
    reloaded = from_mapping({"apps": {"demo": app()}, "callers": {}}, {"S": "from-the-environment"})
    original = asyncio.to_thread

    async def reload_meanwhile(*args: object) -> object:
        result = await original(*args)  # type: ignore[arg-type]
        watch.live.swap(reloaded, time.time())
        return result

    monkeypatch.setattr(asyncio, "to_thread", reload_meanwhile)
    assert await watch.files.check() == []
    assert watch.secret() == "from-the-environment"


def test_a_change_whose_source_a_reload_replaced_is_left_out(tmp_path: Path) -> None:
    config = config_with_files(tmp_path)
    [source, *_] = config.credential_sources
    other = from_mapping({"apps": {"demo": app()}}, {"S": "env-secret"})
    assert rotated(other, [Change(source, Secret("x"))]).apps["demo"].secret.reveal() == (
        "env-secret"
    )


async def test_the_watch_reads_every_watch_s_of_its_clock(tmp_path: Path) -> None:
    clock = MutableClock()
    watch = Watch(config_with_files(tmp_path), clock)
    running = asyncio.ensure_future(watch.files.run())
    try:
        await clock.until_sleeping()
        write(tmp_path / "secret", "second-secret")
        clock.advance(4.9)
        await clock.until_sleeping()
        assert watch.secret() == "first-secret", "not before watch_s"
        clock.advance(0.1)
        await until(lambda: bool(watch.taken))
        assert watch.secret() == "second-secret"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert running.cancelled()


async def test_a_refused_file_holding_the_secret_in_force_again_is_said_to_be_good(
    watch: Watch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "secret"
    path.write_text("")
    with caplog.at_level(logging.INFO, "neu_gateway"):
        assert await watch.files.check() == []
        write(path, "first-secret\n")
        assert await watch.files.check() == []
        assert await watch.files.check() == []
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [f"apps.demo.secret_file: {path} holds a good secret again, the one in force"]
    assert watch.taken == []


async def test_a_reading_that_fails_is_logged_and_the_watch_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = MutableClock()
    watch = Watch(config_with_files(tmp_path), clock)
    failures = [RuntimeError("the first change could not be put in force")]
    take = watch.take

    def failing_once(changes: list[Change]) -> None:
        if failures:
            raise failures.pop()
        take(changes)

    watch.files = SecretFiles(watch.live, clock, 5.0, failing_once)
    running = asyncio.ensure_future(watch.files.run())
    try:
        await clock.until_sleeping()
        write(tmp_path / "secret", "second-secret")
        clock.advance(5)
        await until(lambda: "a reading failed" in caplog.text)
        await clock.until_sleeping()
        clock.advance(5)
        await until(lambda: bool(watch.taken))
        assert watch.secret() == "second-secret"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert "secret and token files: a reading failed (RuntimeError); watching on" in caplog.text


SIGNING_NEW = "whsec_" + "bmV3LXNpZ25pbmcta2V5LTAxMjM0NTY3ODlhYmNkZWY="
SIGNING_OLD = "whsec_" + "b2xkLXNpZ25pbmcta2V5LTAxMjM0NTY3ODlhYmNkZWY="
SIGNING_NEXT = "whsec_" + "bmV4dC1zaWduaW5nLWtleS0wMTIzNDU2Nzg5YWJjZGVm"


def signing_watch(tmp_path: Path) -> Watch:
    current = write(tmp_path / "signing", SIGNING_NEW + "\n")
    previous = write(tmp_path / "signing-previous", SIGNING_OLD + "\n")
    callbacks = {"signing_secret_file": str(current), "signing_secret_previous_file": str(previous)}
    document = {"apps": {"demo": app(callbacks=callbacks)}}
    return Watch(from_mapping(document, {"S": "app-secret"}))


def signing_in_force(watch: Watch) -> list[str]:
    return [secret.reveal() for secret in watch.live.current.apps["demo"].signing_secrets]


async def test_the_signing_secret_files_are_watched_each_in_its_place(tmp_path: Path) -> None:
    watch = signing_watch(tmp_path)
    assert signing_in_force(watch) == [SIGNING_NEW, SIGNING_OLD]
    write(tmp_path / "signing-previous", SIGNING_NEW)
    write(tmp_path / "signing", SIGNING_NEXT)
    changes = await watch.files.check()
    assert sorted(change.source.key for change in changes) == [
        "apps.demo.callbacks.signing_secret_file",
        "apps.demo.callbacks.signing_secret_previous_file",
    ]
    assert signing_in_force(watch) == [SIGNING_NEXT, SIGNING_NEW]
    assert watch.live.current.apps["demo"].secret.reveal() == "app-secret"


async def test_a_signing_file_holding_no_whsec_secret_is_refused_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watch = signing_watch(tmp_path)
    write(tmp_path / "signing", "bm90LWEtd2hzZWMtc2VjcmV0LWF0LWFsbC0wMTIzNDU2")
    assert await watch.files.check() == []
    assert signing_in_force(watch) == [SIGNING_NEW, SIGNING_OLD]
    [warning] = warnings_of(caplog)
    assert warning.startswith(f"apps.demo.callbacks.signing_secret_file: {tmp_path / 'signing'}: ")
    assert "must start with whsec_" in warning
    assert "bm90LWEtd2hzZWMtc2VjcmV0" not in caplog.text
