"""check-config, init, sign and verify, run in this process."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.starter import FILES, STARTER_CONFIG
from gateway.cli.tools import summary
from gateway.config import placeholders
from gateway.config.load import from_mapping
from tests.cli.support import run
from tests.config.documents import app
from tests.support.processes import write_config

VECTOR_SIGN = "964bd40923c2f8911560c18cb06f580d3d26436378c11edff3f0691e4db00242"
VECTOR_PARAMS = ("code=abc123", "grantType=authorization_code", "scope=user.info")


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One app, demo-appid, with the published vector's secret."""
    monkeypatch.setenv("NEU_SECRET_DEMO", "demo-secret")
    return write_config(tmp_path, "https://platform.example")


def test_sign_prints_the_published_vector_with_the_secret_masked(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(capsys, "sign", "-c", str(config), *VECTOR_PARAMS, "timestamp=1700000000000")
    assert ran.status == 0
    assert ran.stdout.splitlines() == [
        "app:       demo (appid demo-appid)",
        "canonical: appid=demo-appidcode=abc123grantType=authorization_codescope=user.info"
        "secret=******timestamp=1700000000000",
        f"sign:      {VECTOR_SIGN}",
        "form:      code=abc123&grantType=authorization_code&scope=user.info&appid=demo-appid"
        f"&timestamp=1700000000000&sign={VECTOR_SIGN}",
    ]
    assert "demo-secret" not in ran.stdout + ran.stderr


def test_sign_replaces_a_given_appid_and_sign_and_drops_a_secret(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(
        capsys,
        "sign",
        "-c",
        str(config),
        *VECTOR_PARAMS,
        "timestamp=1700000000000",
        "appid=someone-else",
        "sign=given",
        "secret=guessed",
    )
    assert ran.status == 0
    assert ran.stderr == "note: appid replaced by the app's own, demo-appid\n"
    assert f"sign:      {VECTOR_SIGN}" in ran.stdout
    assert "guessed" not in ran.stdout


def test_sign_takes_the_time_now_unless_given(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(capsys, "sign", "-c", str(config), "x=1")
    [timestamp] = [part for part in ran.stdout.split("&") if part.startswith("timestamp=")]
    assert len(timestamp.removeprefix("timestamp=")) == 13


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-equals-sign"], "neu-gateway: 'no-equals-sign' is not key=value\n"),
        (["=value"], "neu-gateway: '=value' is not key=value\n"),
        (["--app", "nope"], "neu-gateway: choose an app with --app (demo)\n"),
    ],
    ids=["a param without =", "a param without a key", "an app not in the config"],
)
@pytest.mark.parametrize("command", ["sign", "verify"])
def test_sign_and_verify_refuse_bad_arguments_with_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str], command: str, argv: list[str], message: str
) -> None:
    ran = run(capsys, command, "-c", str(config), *argv)
    assert (ran.status, ran.stdout, ran.stderr) == (2, "", message)


def test_verify_accepts_the_published_vector(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(
        capsys,
        "verify",
        "-c",
        str(config),
        *VECTOR_PARAMS,
        "timestamp=1700000000000",
        f"sign={VECTOR_SIGN}",
    )
    assert ran.status == 0
    assert ran.stdout.splitlines()[-1] == "result:    valid"


def test_verify_names_the_sign_it_expected(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(
        capsys,
        "verify",
        "-c",
        str(config),
        *VECTOR_PARAMS,
        "timestamp=1700000000000",
        "sign=" + "0" * 64,
    )
    assert ran.status == 1
    assert ran.stdout.splitlines()[-1] == f"result:    INVALID, expected sign {VECTOR_SIGN}"


def test_verify_without_a_sign_says_so(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ran = run(capsys, "verify", "-c", str(config), "timestamp=1")
    assert ran.status == 1
    assert ran.stderr == "result:    no sign=... given\n"


def test_check_config_shows_the_listener_and_each_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEU_SECRET_DEMO", "s3cret-value")
    config = write_config(tmp_path)
    ran = run(capsys, "check-config", "-c", str(config), "--probe")
    assert ran.status == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        f"{config}: ok",
        "  listen: 127.0.0.1:0",
        "  admin.listen: none (/healthz, /readyz and /metrics are served on listen)",
        "  callbacks.listen: none (callbacks off)",
        "  sandbox.listen: 127.0.0.1:0 (the embedded sandbox, for demo)",
        "  workers: 1",
        "  pid_file: none",
        "  app demo (default): appid demo-appid, upstream sandbox (embedded, http://127.0.0.1:0)",
        "  callers: none (no token asked for)",
        "  callbacks: off (no callbacks.listen)",
        "  cache: memory, up to 10000 logins",
        "  probe: app demo: sandbox (embedded; runs on this host's clock and checks signs "
        "with this config's secret)",
    ]
    assert "s3cret-value" not in ran.stdout


def test_check_config_names_every_listener_the_workers_and_the_pid_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEU_SECRET_DEMO", "s3cret-value")
    config = write_config(
        tmp_path,
        "https://platform.example",
        admin="{listen: {host: 127.0.0.1, port: 9091}}",
        callbacks="{listen: {host: 0.0.0.0, port: 8081}}",
        workers="3",
        pid_file=str(tmp_path / "gw.pid"),
        cache="{backend: redis, url: 'redis://127.0.0.1:6379/0'}",
    )
    ran = run(capsys, "check-config", "-c", str(config))
    assert ran.status == 0, ran.stderr
    assert ran.stdout.splitlines()[1:7] == [
        "  listen: 127.0.0.1:0",
        "  admin.listen: 127.0.0.1:9091 (/healthz, /readyz, /metrics)",
        "  callbacks.listen: 0.0.0.0:8081",
        "  sandbox.listen: none (no app has upstream: sandbox)",
        "  workers: 3",
        f"  pid_file: {tmp_path / 'gw.pid'}",
    ]
    assert "  callbacks: store redis" in ran.stdout.splitlines()


def test_check_config_names_the_sentinels_and_the_replicas_writes_wait_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEU_SECRET_DEMO", "s3cret-value")
    monkeypatch.setenv("REDIS_PW", "redis-s3cret")
    config = write_config(
        tmp_path,
        "https://platform.example",
        cache=(
            "{backend: redis, sentinel: {master: neu, nodes: ['s0:26379', 's1:26379'], "
            "password_env: REDIS_PW}}"
        ),
    )
    ran = run(capsys, "check-config", "-c", str(config))
    assert ran.status == 0, ran.stderr
    assert (
        "  cache: redis master neu behind sentinels s0:26379,s1:26379, keys under 'neu:', "
        "writes wait for 1 replica(s)"
    ) in ran.stdout.splitlines()
    assert "redis-s3cret" not in ran.stdout + ran.stderr


def test_check_config_refuses_inits_placeholders_naming_each_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    starter = STARTER_CONFIG.replace("/run/secrets", str(tmp_path))
    for name, _ in FILES:
        (tmp_path / Path(name).name).write_text("t" * 32 + "\n")
    path = tmp_path / "gateway.yaml"
    path.write_text(starter)
    ran = run(capsys, "check-config", "-c", str(path))
    assert (ran.status, ran.stdout) == (2, "")
    assert ran.stderr.splitlines() == [
        f"neu-gateway: invalid config {path}:",
        f'  apps.myapp.appid: still init\'s placeholder "{placeholders.APPID}"',
        f'  apps.myapp.upstream: still init\'s placeholder "{placeholders.UPSTREAM}"',
    ]
    path.write_text(
        starter.replace(placeholders.APPID, "app-42").replace(
            placeholders.UPSTREAM, "https://your-platform-domain.example.com/"
        )
    )
    assert run(capsys, "check-config", "-c", str(path)).status == 0


def test_check_config_refuses_a_tls_file_it_cannot_use_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEU_SECRET_DEMO", "s3cret-value")
    config = write_config(tmp_path, "https://platform.example")
    text = config.read_text().replace(
        "    upstream: https://platform.example\n",
        f"    upstream: https://platform.example\n    tls: {{ca_file: {tmp_path}}}\n",
    )
    config.write_text(text)
    ran = run(capsys, "check-config", "-c", str(config))
    assert ran.status == 2
    assert ran.stdout == ""
    first, second = ran.stderr.splitlines()
    assert first == f"neu-gateway: invalid config {config}:"
    assert second.startswith("  apps.demo.tls.ca_file: cannot use")


def test_check_config_of_no_file_says_how_to_get_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(capsys, "check-config", "-c", str(tmp_path / "absent.yaml"))
    assert ran.status == 2
    assert ran.stderr.splitlines()[0] == f"neu-gateway: no config file at {tmp_path}/absent.yaml"


def test_init_writes_the_starter_once_and_again_only_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "conf"
    written = run(capsys, "init", str(directory))
    path = directory / "gateway.yaml"
    assert written.status == 0
    assert written.stdout.splitlines()[0] == f"wrote {path}"
    assert written.stdout.splitlines()[-2:] == [
        f"  3. neu-gateway check-config -c {path}",
        f"  4. neu-gateway serve -c {path}",
    ]
    assert path.read_text() == STARTER_CONFIG
    path.write_text("# mine\n")
    again = run(capsys, "init", str(directory))
    assert (again.status, again.stderr) == (
        2,
        f"neu-gateway: {path} exists; --force replaces it\n",
    )
    assert path.read_text() == "# mine\n"
    forced = run(capsys, "init", str(directory), "--force")
    assert forced.status == 0
    assert path.read_text() == STARTER_CONFIG


def test_init_says_why_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    ran = run(capsys, "init", str(blocker / "conf"))
    assert ran.status == 2
    assert ran.stderr.startswith(f"neu-gateway: cannot write {blocker}/conf/gateway.yaml (")


NEW_SIGNING = "whsec_" + "bmV3LXNpZ25pbmcta2V5LTAxMjM0NTY3ODlhYmNkZWY="
OLD_SIGNING = "whsec_" + "b2xkLXNpZ25pbmcta2V5LTAxMjM0NTY3ODlhYmNkZWY="


@pytest.mark.parametrize(
    ("callbacks", "said"),
    [
        ({}, "deliveries unsigned (no callbacks.signing_secret_file)"),
        ({"signing_secret_env": "NEW"}, "deliveries signed (Standard Webhooks)"),
        (
            {"signing_secret_env": "NEW", "signing_secret_previous_env": "OLD"},
            "deliveries signed with the new and the previous secret (a rotation)",
        ),
        (
            {"signing_secret_env": "NEW", "signing_secret_previous_env": "NEW"},
            "deliveries signed twice with one secret (the previous is the current one)",
        ),
    ],
    ids=["unsigned", "signed", "a rotation", "a rotation half done"],
)
def test_check_config_says_whether_an_apps_deliveries_are_signed(
    callbacks: dict[str, str], said: str
) -> None:
    document = {
        "apps": {"demo": app(callbacks={"deliver_to": "http://orders:9000/p", **callbacks})},
        "callbacks": {"listen": {"port": 0}},
    }
    config = from_mapping(document, {"S": "s", "NEW": NEW_SIGNING, "OLD": OLD_SIGNING})
    [line] = [line for line in summary(config) if line.startswith("  app demo: ")]
    assert line.endswith(f"; {said}")
    assert "bmV3" not in line


def test_check_config_shows_a_services_url_without_its_password() -> None:
    deliver_to = "https://orders:hunter2-password@orders.internal/payments?token=t0ken-in-query"
    document = {
        "apps": {"demo": app(callbacks={"deliver_to": deliver_to})},
        "callbacks": {"listen": {"port": 0}},
    }
    config = from_mapping(document, {"S": "s"})
    [line] = [line for line in summary(config) if line.startswith("  app demo: ")]
    assert line.startswith("  app demo: deliver_to https://orders.internal/payments;")
    assert "hunter2-password" in config.credentials()
