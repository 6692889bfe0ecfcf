"""reload and callbacks, run in this process: what each refuses, and the outbox as the
callbacks commands show and change it. (A reload that reaches a gateway is in
tests/e2e/test_operations.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.callbacks.outbox import SqliteOutbox
from tests.cli.support import run
from tests.support.processes import write_config


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEU_SECRET_DEMO", "s3cret-value")


def unused_pid() -> int:
    """A process id no process has: above the kernel's largest."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def test_reload_without_a_pid_file_or_pid_asks_for_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(capsys, "reload", "-c", str(write_config(tmp_path)))
    assert ran.status == 2
    assert ran.stderr == (
        "neu-gateway: no pid_file in the config: give the gateway's process id with --pid, or "
        "set pid_file (serve writes it)\n"
    )


@pytest.mark.parametrize(
    ("content", "why"),
    [(None, "No such file or directory"), ("not-a-pid\n", "not a number")],
    ids=["no pid_file", "not a number in it"],
)
def test_reload_says_why_it_cannot_read_the_pid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, why: str
) -> None:
    pid_file = tmp_path / "gateway.pid"
    if content is not None:
        pid_file.write_text(content)
    ran = run(capsys, "reload", "-c", str(write_config(tmp_path, pid_file=str(pid_file))))
    assert ran.status == 2
    assert ran.stderr == (
        f"neu-gateway: cannot read a process id from pid_file {pid_file} ({why}); is the "
        "gateway running?\n"
    )


def test_reload_sends_nothing_to_a_process_that_is_not_a_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = unused_pid()
    ran = run(capsys, "reload", "-c", str(write_config(tmp_path)), "--pid", str(pid))
    assert ran.status == 1
    assert ran.stderr == (
        f"neu-gateway: process {pid} is not a running neu-gateway (a stale pid_file?); "
        "nothing sent\n"
    )


def test_reload_of_an_invalid_config_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, workers="none")
    ran = run(capsys, "reload", "-c", str(config), "--pid", str(unused_pid()))
    assert ran.status == 2
    assert ran.stderr.splitlines()[0] == f"neu-gateway: invalid config {config}:"
    assert ran.stderr.splitlines()[-1] == (
        "neu-gateway: not reloaded; the running gateway keeps its config"
    )


@pytest.fixture
def outbox_config(tmp_path: Path) -> tuple[Path, Path]:
    """A config with callbacks on, and its outbox holding delivery 1 (dead after three
    attempts) and delivery 2 (pending)."""
    store = tmp_path / "outbox.db"

    async def fill() -> None:
        outbox = SqliteOutbox(store)
        try:
            await outbox.add("demo", "T-1", 1, b"{}", 1000.0)
            await outbox.add("demo", "T-2", 1, b"{}", 1000.0)
            for dead in (False, False, True):
                await outbox.failed(1, "HTTP 503", 1000.0, dead)
        finally:
            await outbox.close()

    asyncio.run(fill())
    config = write_config(tmp_path, callbacks=f"{{listen: {{port: 0}}, store: 'sqlite://{store}'}}")
    return config, store


def test_callbacks_list_shows_the_pending_and_the_dead(
    outbox_config: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = outbox_config
    ran = run(capsys, "callbacks", "list", "-c", str(config))
    assert ran.status == 0, ran.stderr
    header, dead, pending, total = ran.stdout.splitlines()
    assert header.split() == ["id", "state", "app", "tradeNo:status", "attempts", "last", "error"]
    assert dead.split() == ["1", "dead", "demo", "T-1:1", "3", "HTTP", "503"]
    assert pending.split() == ["2", "pending", "demo", "T-2:1", "0", "-"]
    assert total == "2 pending or dead"


def test_callbacks_replay_makes_a_dead_delivery_pending(
    outbox_config: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = outbox_config
    ran = run(capsys, "callbacks", "replay", "1", "-c", str(config))
    assert (ran.status, ran.stdout) == (
        0,
        "delivery 1 is pending again; the running gateway sends it shortly\n",
    )
    listed = run(capsys, "callbacks", "list", "-c", str(config))
    assert [line.split()[1] for line in listed.stdout.splitlines()[1:3]] == ["pending"] * 2


def test_callbacks_replay_of_no_such_delivery_exits_1(
    outbox_config: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = outbox_config
    ran = run(capsys, "callbacks", "replay", "7", "-c", str(config))
    assert (ran.status, ran.stderr) == (1, "neu-gateway: no delivery 7 in the outbox\n")


@pytest.mark.parametrize("command", [["list"], ["replay", "1"]], ids=["list", "replay"])
def test_callbacks_off_means_no_outbox_is_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    store = tmp_path / "outbox" / "outbox.db"
    config = write_config(tmp_path, callbacks=f"{{store: 'sqlite://{store}'}}")
    ran = run(capsys, "callbacks", *command, "-c", str(config))
    assert ran.status == 2
    assert ran.stderr == (
        f"neu-gateway: callbacks are off in {config} (no callbacks.listen), so there is no "
        "outbox to read\n"
    )
    assert not store.parent.exists()


def test_an_outbox_that_cannot_be_opened_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = f"sqlite://{blocker}/outbox.db"
    config = write_config(tmp_path, callbacks=f"{{listen: {{port: 0}}, store: '{store}'}}")
    ran = run(capsys, "callbacks", "list", "-c", str(config))
    assert ran.status == 2
    assert ran.stderr.startswith(f"neu-gateway: cannot read the outbox {store}: ")
