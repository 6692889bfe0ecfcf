"""`neu-gateway sandbox`'s apps: a secret on the command line (warned of, but for the demo's),
in a file or in an environment variable; and every way an app argument is refused, naming the
flag and never the secret."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.cli.sandbox_apps import AppArguments, SandboxAppsError, sandbox_secrets
from gateway.core.secrets import DEMO_APPID, DEMO_SECRET
from tests.cli.support import run
from tests.support.paths import DETAIL
from tests.support.platform_double import reference_sign
from tests.support.processes import StartCommand, run_command

FILED = "filed-s3cret-value"
ENVIRONED = "environed-s3cret-value"
INLINE = "inline-s3cret-value"
ENVIRON = {"APP_SECRET": ENVIRONED, "EMPTY": ""}
WARNING = (
    "--app APPID=SECRET puts the secret of {} in the process list (ps) and the shell's "
    "history: give it with --app-secret-file APPID=PATH or --app-secret-env APPID=VAR"
)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    # As `echo` or a Kubernetes secret writes it: the newline is not part of the secret.
    path.write_text(f"{FILED}\n")
    return path


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_no_app_given_is_the_demo_app(caplog: pytest.LogCaptureFixture) -> None:
    assert sandbox_secrets(AppArguments(), ENVIRON) == {DEMO_APPID: DEMO_SECRET}
    assert warnings(caplog) == []


def test_each_app_from_its_own_source(secret_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    given = AppArguments(
        inline=[f"{DEMO_APPID}={DEMO_SECRET}"],
        files=[f"filed={secret_file}"],
        env_vars=["environed=APP_SECRET"],
    )
    assert sandbox_secrets(given, ENVIRON) == {
        DEMO_APPID: DEMO_SECRET,
        "filed": FILED,
        "environed": ENVIRONED,
    }
    # The demo's public secret on the command line is no secret shown.
    assert warnings(caplog) == []


def test_a_secret_on_the_command_line_is_warned_of_once_by_appid(
    caplog: pytest.LogCaptureFixture,
) -> None:
    given = AppArguments(inline=[f"b-app={INLINE}", f"a-app={INLINE}2", f"{DEMO_APPID}=x=y"])
    assert sandbox_secrets(given, ENVIRON) == {
        "b-app": INLINE,
        "a-app": f"{INLINE}2",
        DEMO_APPID: "x=y",
    }
    assert warnings(caplog) == [WARNING.format(f"a-app, b-app, {DEMO_APPID}")]
    assert INLINE not in caplog.text


@pytest.mark.parametrize(
    ("given", "message"),
    [
        pytest.param(
            AppArguments(inline=[INLINE]),
            "--app takes APPID=SECRET; a value has no '=' (not shown: it may be the secret)",
            id="an inline secret without its appid and =",
        ),
        pytest.param(
            AppArguments(inline=[f"={INLINE}"]),
            "--app takes APPID=SECRET; a value has no appid before its '=' (not shown: it may "
            "be the secret)",
            id="an inline secret without its appid",
        ),
        pytest.param(
            AppArguments(inline=["x="]), "--app x=: the secret is empty", id="an empty secret"
        ),
        pytest.param(
            AppArguments(files=["{tmp}/absent"]),
            "--app-secret-file '{tmp}/absent' is not APPID=PATH",
            id="a file without its appid",
        ),
        pytest.param(
            AppArguments(files=["x={tmp}/absent"]),
            "--app-secret-file x={tmp}/absent: cannot read {tmp}/absent (No such file or "
            "directory)",
            id="a missing file",
        ),
        pytest.param(
            AppArguments(files=["x={tmp}"]),
            "--app-secret-file x={tmp}: cannot read {tmp} (not a regular file)",
            id="a directory",
        ),
        pytest.param(
            AppArguments(files=["x={tmp}/blank"]),
            "--app-secret-file x={tmp}/blank: {tmp}/blank is empty",
            id="a file of whitespace",
        ),
        pytest.param(
            AppArguments(files=["x={tmp}/latin1"]),
            "--app-secret-file x={tmp}/latin1: cannot read {tmp}/latin1 (not UTF-8 text)",
            id="a file that is not UTF-8",
        ),
        pytest.param(
            AppArguments(env_vars=["x="]),
            "--app-secret-env 'x=' is not APPID=VAR",
            id="a variable without its name",
        ),
        pytest.param(
            AppArguments(env_vars=["x=UNSET_ONE"]),
            "--app-secret-env x=UNSET_ONE: environment variable UNSET_ONE is not set",
            id="an unset variable",
        ),
        pytest.param(
            AppArguments(env_vars=["x=EMPTY"]),
            "--app-secret-env x=EMPTY: environment variable EMPTY is empty",
            id="an empty variable",
        ),
        pytest.param(
            AppArguments(inline=[f"x={INLINE}"], env_vars=["x=APP_SECRET"]),
            "--app-secret-env: app x is given twice (--app, --app-secret-env); give each app once",
            id="an app given twice",
        ),
    ],
)
def test_an_app_argument_refused_names_the_flag_and_never_the_secret(
    tmp_path: Path, given: AppArguments, message: str
) -> None:
    (tmp_path / "blank").write_text(" \n\t\n")
    (tmp_path / "latin1").write_bytes(b"caf\xe9")
    tmp = str(tmp_path)
    placed = AppArguments(
        *(
            None if items is None else [item.format(tmp=tmp) for item in items]
            for items in (given.inline, given.files, given.env_vars)
        )
    )
    with pytest.raises(SandboxAppsError) as refused:
        sandbox_secrets(placed, ENVIRON)
    assert str(refused.value) == message.format(tmp=tmp)
    for secret in (INLINE, ENVIRONED):
        assert secret not in str(refused.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--app", INLINE], "--app takes APPID=SECRET; a value has no '='"),
        (["--app-secret-env", "x=UNSET_ONE"], "--app-secret-env x=UNSET_ONE: environment"),
        (["--app-secret-file", "x=/nonexistent"], "--app-secret-file x=/nonexistent: cannot"),
    ],
    ids=["inline", "environment", "file"],
)
def test_the_sandbox_command_exits_2_on_an_app_it_cannot_use(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    ran = run(capsys, "sandbox", *argv)
    assert ran.status == 2
    assert ran.stderr.startswith(f"neu-gateway: {message}")
    assert INLINE not in ran.stderr


def signed_with(appid: str, secret: str) -> dict[str, str]:
    fields = {"tradeNo": "T", "appid": appid, "timestamp": str(time.time_ns() // 1_000_000)}
    return {**fields, "sign": reference_sign(fields, secret)}


@pytest.mark.e2e
async def test_secrets_from_a_file_and_the_environment_stay_out_of_ps(
    start_command: StartCommand, secret_file: Path
) -> None:
    sandbox = await start_command(
        "sandbox",
        "--port",
        "0",
        "--app-secret-file",
        f"filed={secret_file}",
        "--app-secret-env",
        "environed=APP_SECRET",
        ready_when="sandbox",
        env={"APP_SECRET": ENVIRONED},
    )
    listed = await run_command("ps", "-ww", "-o", "args=", "-p", str(sandbox.process.pid))
    assert f"--app-secret-file filed={secret_file}" in listed.stdout
    assert FILED not in listed.stdout
    assert ENVIRONED not in listed.stdout
    async with aiohttp.ClientSession() as session:
        for appid, secret in (("filed", FILED), ("environed", ENVIRONED)):
            async with session.get(
                sandbox.url + DETAIL, params=signed_with(appid, secret)
            ) as response:
                body = await response.json()
            assert body["responseHeader"] == {"status": 404, "msg": "trade 'T' not found"}
    assert "--app APPID=SECRET" not in sandbox.log
    assert FILED not in sandbox.log


@pytest.mark.e2e
async def test_a_secret_on_the_command_line_is_warned_of_in_the_log(
    start_command: StartCommand,
) -> None:
    sandbox = await start_command(
        "sandbox", "--port", "0", "--app", f"real-app={INLINE}", ready_when="sandbox"
    )
    assert WARNING.format("real-app") in sandbox.log
    assert INLINE not in sandbox.log
