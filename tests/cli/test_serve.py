"""serve and sandbox, run in this process as far as they go before serving: what each refuses,
and how. (Serving is in tests/e2e/test_cli.py and test_workers.py.)"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import logs
from gateway.cli import serve
from gateway.cli.main import parser_of_commands, serve_in_log_format
from gateway.config.load import from_mapping
from gateway.runtime.workers import PLACEMENT_ENV
from tests.cli.support import run
from tests.support.processes import write_config


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEU_SECRET_DEMO", "s3cret-value")


@pytest.fixture
def logging_kept(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """serve sets up the process's logging once it has read the config: the test run's own
    comes back after the test."""
    root = logging.getLogger()
    level = root.level
    handlers = [(handler, handler.formatter, list(handler.filters)) for handler in root.handlers]
    monkeypatch.setattr(logs, "_direct_format", logs._direct_format)
    yield
    logging.captureWarnings(False)
    root.setLevel(level)
    for handler, formatter, filters in handlers:
        handler.setFormatter(formatter)
        handler.filters[:] = filters


def test_serve_of_no_config_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(capsys, "serve", "-c", str(tmp_path / "absent.yaml"))
    assert ran.status == 2
    assert ran.stderr.startswith(f"neu-gateway: no config file at {tmp_path}/absent.yaml\n")


def test_a_worker_whose_supervisor_ended_before_the_handover_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    said = {
        "index": 3,
        "listen_port": 1,
        "callbacks_port": None,
        "admin_port": None,
        "sandbox_url": None,
        "ready_fd": -1,
        "handover_fd": read_fd,
    }
    monkeypatch.setenv(PLACEMENT_ENV, json.dumps(said))
    try:
        # The worker reads no file: the one named is not there.
        ran = run(capsys, "serve", "-c", str(tmp_path / "absent.yaml"))
    finally:
        os.close(read_fd)
    assert ran.status == 1
    assert ran.stderr == (
        "neu-gateway: worker 3: the supervisor ended before it handed over the config\n"
    )


@pytest.mark.usefixtures("logging_kept")
@pytest.mark.parametrize("workers", ["0", "65"])
def test_serve_takes_1_to_64_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    ran = run(capsys, "serve", "-c", str(write_config(tmp_path)), "--workers", workers)
    assert (ran.status, ran.stderr) == (2, "neu-gateway: --workers must be 1 to 64\n")


@pytest.mark.usefixtures("logging_kept")
def test_several_workers_without_redis_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(capsys, "serve", "-c", str(write_config(tmp_path)), "--workers", "2")
    assert ran.status == 2
    assert ran.stderr.startswith("neu-gateway: workers: 2 needs cache.backend: redis: ")


def test_a_backlog_above_the_kernels_cap_is_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    cap = int(serve.SOMAXCONN.read_text())
    if cap >= 65535:
        pytest.skip("the kernel takes any backlog the config can name")
    config = from_mapping(
        {
            "listen": {"backlog": cap + 1},
            "apps": {"demo": {"appid": "demo-appid", "secret_env": "S", "upstream": "sandbox"}},
        },
        {"S": "s3cret-value"},
    )
    with caplog.at_level(logging.WARNING, "neu_gateway"):
        serve.warn_of_capped_backlogs(config)
    assert [record.getMessage() for record in caplog.records] == [
        f"listen.backlog is {cap + 1}, but the kernel holds at most {cap} (net.core.somaxconn)"
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--host", "0.0.0.0"], "the sandbox listens on a loopback address only"),
        (
            ["--app", "demo-appid"],
            "--app takes APPID=SECRET; a value has no '=' (not shown: it may be the secret)",
        ),
        (
            ["--app", "=s3cret"],
            "--app takes APPID=SECRET; a value has no appid before its '=' (not shown: it may "
            "be the secret)",
        ),
        (
            ["--allow-backend-host", "http://backend.internal"],
            "--allow-backend-host 'http://backend.internal' is not a bare host name or IP "
            "address, e.g. backend.internal or 10.0.0.5 (no scheme, port or path)",
        ),
    ],
    ids=["a public address", "an app without its secret", "a secret without its app", "a URL"],
)
def test_the_sandbox_command_refuses_with_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    ran = run(capsys, "sandbox", *argv)
    assert (ran.status, ran.stderr) == (2, f"neu-gateway: {message}\n")


def test_the_sandbox_command_names_its_options_when_its_port_is_taken(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = run(capsys, "sandbox", "--port", str(port))
    assert ran.status == 1
    assert ran.stderr == (
        f"neu-gateway: cannot start: --host/--port: cannot listen on 127.0.0.1:{port}: the port "
        "is in use by another process (stop it, or change --host/--port)\n"
    )


@pytest.mark.parametrize(
    ("given", "address"),
    [
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("LocalHost:8080", ("localhost", 8080)),
        ("gateway.internal:80", ("gateway.internal", 80)),
        ("[::1]:8080", ("::1", 8080)),
        ("[0:0:0:0:0:0:0:1]:65535", ("::1", 65535)),
    ],
)
def test_listen_takes_host_and_port(given: str, address: tuple[str, int]) -> None:
    assert serve.listen_address(given) == address


LISTEN_FORMS = "HOST:PORT, e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080 (port 0 picks one)"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        pytest.param("8080", f"'8080' is not {LISTEN_FORMS}", id="a port alone"),
        pytest.param(":8080", f"':8080' is not {LISTEN_FORMS}", id="no host"),
        pytest.param("[::1]", f"'[::1]' is not {LISTEN_FORMS}", id="no port"),
        pytest.param("http://a:80", f"'http://a:80' is not {LISTEN_FORMS}", id="a URL"),
        pytest.param("*:80", f"'*:80' is not {LISTEN_FORMS}", id="a wildcard"),
        pytest.param(
            "::1:8080",
            "'::1:8080': an IPv6 address goes in brackets, as in [::1]:8080",
            id="IPv6 without brackets",
        ),
        pytest.param(
            "[gateway]:80",
            f"'[gateway]:80': 'gateway' in brackets is not an IPv6 address; give {LISTEN_FORMS}",
            id="a name in brackets",
        ),
        pytest.param("a:", "'a:': the port must be 0 to 65535 (0 picks one)", id="empty port"),
        pytest.param(
            "a:65536", "'a:65536': the port must be 0 to 65535 (0 picks one)", id="port too big"
        ),
        pytest.param("a:+1", "'a:+1': the port must be 0 to 65535 (0 picks one)", id="a sign"),
        pytest.param(
            "a:\u0663", "'a:\u0663': the port must be 0 to 65535 (0 picks one)", id="not ASCII"
        ),
    ],
)
def test_listen_refuses_what_is_not_host_and_port_with_exit_2(
    capsys: pytest.CaptureFixture[str], given: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        run(capsys, "serve", "--listen", given)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"neu-gateway serve: error: argument --listen: {message}"
    )


def test_listen_on_a_public_address_needs_callers_as_the_config_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(capsys, "serve", "-c", str(write_config(tmp_path)), "--listen", "0.0.0.0:0")
    assert ran.status == 2
    assert ran.stderr.startswith(
        "neu-gateway: --listen: 0.0.0.0 is not a loopback address and no callers are configured"
    )


def test_listen_replaces_the_files_host_and_port_and_nothing_else() -> None:
    config = from_mapping(
        {
            "listen": {"host": "127.0.0.1", "port": 8080, "backlog": 64},
            "apps": {"demo": {"appid": "demo-appid", "secret_env": "S", "upstream": "sandbox"}},
        },
        {"S": "s3cret-value"},
    )
    moved = serve.listening_on(config, ("::1", 9000))
    assert (moved.listen.host, moved.listen.port, moved.listen.backlog) == ("::1", 9000, 64)
    assert serve.listening_on(moved, ("::1", 9000)) == moved
    assert serve.listening_on(config, None) is config


@pytest.mark.usefixtures("logging_kept")
def test_an_unexpected_error_in_serve_is_logged_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(serve, "serve", broken)
    args = parser_of_commands().parse_args(["serve", "-c", str(write_config(tmp_path))])
    with caplog.at_level(logging.ERROR, "neu_gateway"):
        assert serve_in_log_format(args) == 1
    [record] = caplog.records
    assert record.getMessage() == "neu-gateway stopped by an unexpected error"
    assert "RuntimeError: a bug" in (record.exc_text or "")


@pytest.mark.usefixtures("logging_kept")
def test_serve_logs_in_the_format_its_config_names_before_validating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, logging="{format: json}", unknown="1")
    args = parser_of_commands().parse_args(["--log-format", "text", "serve", "-c", str(config)])
    assert serve_in_log_format(args) == 2
    assert logs.current_format() == "text", "--log-format wins"
    args = parser_of_commands().parse_args(["serve", "-c", str(config)])
    assert serve_in_log_format(args) == 2
    assert logs.current_format() == "json"


@pytest.mark.usefixtures("logging_kept")
def test_serve_warns_of_inits_placeholders_left_in_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, upstream="https://your-platform-domain.example")
    config.write_text(config.read_text().replace("appid: demo-appid", "appid: your-appid"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A taken port ends it right after the config is read, where the warning is given.
        with caplog.at_level(logging.WARNING, "neu_gateway"):
            ran = run(capsys, "serve", "-c", str(config), "--listen", f"127.0.0.1:{port}")
    assert ran.status == 1
    warned = [
        record.getMessage() for record in caplog.records if "placeholder" in record.getMessage()
    ]
    assert warned == [
        f'apps.demo.{key}: still init\'s placeholder "{value}": every call of this app will '
        "fail until it holds the app's own"
        for key, value in (
            ("appid", "your-appid"),
            ("upstream", "https://your-platform-domain.example"),
        )
    ]
