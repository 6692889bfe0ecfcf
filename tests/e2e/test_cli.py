"""The `neu-gateway` command line: every subcommand, as a user runs it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.paths import DETAIL, TOKEN
from tests.support.platform_double import SECRET
from tests.support.ports import free_port
from tests.support.processes import StartCommand, StartGateway, neu_gateway, write_config
from tests.support.rawhttp import raw_request
from tests.support.receiver import CallbackReceiver

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
ENV = {"NEU_SECRET_DEMO": SECRET}


@pytest.mark.parametrize(
    "command", [[], ["serve"], ["check-config"], ["init"], ["sign"], ["verify"]]
)
async def test_help(command: list[str]) -> None:
    result = await neu_gateway(*command, "--help")
    assert result.status == 0
    assert "usage: neu-gateway" in result.stdout


async def test_check_config_on_the_repository_config() -> None:
    result = await neu_gateway("check-config", "-c", str(REPO / "gateway.yaml"))
    assert result.status == 0, result.stderr
    assert "app demo (default): appid demo-appid" in result.stdout


async def test_check_config_summarises_callers_callbacks_and_cache(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "https://platform.example",
        app_callbacks="{deliver_to: 'http://127.0.0.1:9000/payments'}",
        callers="{orders: {token_env: ORDERS_TOKEN, apps: [demo], allow: "
        "['POST /neuopenapi/pay/transactions/*', 'GET /neuopenapi/pay/transactions/tradedetail'], "
        "rate_limit: {requests_per_s: 20, burst: 40}}}",
        trusted_networks="[127.0.0.1/32]",
        cache="{backend: redis, url: 'redis://:hunter2-password@redis.internal:6379/0?password=x'}",
        callbacks="{listen: {port: 8081}}",
    )
    result = await neu_gateway(
        "check-config", "-c", str(config), env={**ENV, "ORDERS_TOKEN": "t" * 32}
    )
    assert result.status == 0, result.stderr
    assert result.stdout.splitlines()[8:] == [
        "  caller orders: apps demo; allow POST /neuopenapi/pay/transactions/*, "
        "GET /neuopenapi/pay/transactions/tradedetail; "
        "rate limit 20 requests a second, bursts of 40 (each process)",
        "  trusted networks: 127.0.0.1/32",
        "  callbacks: store redis",
        "    app demo: deliver_to http://127.0.0.1:9000/payments; deliveries unsigned "
        "(no callbacks.signing_secret_file)",
        "  cache: redis at redis://redis.internal:6379/0, keys under 'neu:'",
    ]
    assert "hunter2" not in result.stdout + result.stderr


async def test_check_config_says_what_is_off(tmp_path: Path) -> None:
    result = await neu_gateway("check-config", "-c", str(write_config(tmp_path)), env=ENV)
    assert result.status == 0, result.stderr
    assert result.stdout.splitlines()[8:] == [
        "  callers: none (no token asked for)",
        "  callbacks: off (no callbacks.listen)",
        "  cache: memory, up to 10000 logins",
    ]


async def test_init_writes_a_config_that_check_config_accepts_once_its_files_are_made(
    tmp_path: Path,
) -> None:
    written = await neu_gateway("init", "conf", cwd=tmp_path)
    assert written.status == 0, written.stderr
    assert written.stdout.splitlines()[0] == "wrote conf/gateway.yaml"
    for step in (
        "/run/secrets/myapp",
        "/run/secrets/orders-token",
        "mode 0600",
        "neu-gateway check-config -c conf/gateway.yaml",
        "neu-gateway serve -c conf/gateway.yaml",
    ):
        assert step in written.stdout
    config = tmp_path / "conf" / "gateway.yaml"
    # The files where this test may write them.
    secrets = tmp_path / "secrets"
    config.write_text(config.read_text().replace("/run/secrets", str(secrets)))

    without = await neu_gateway("check-config", "-c", str(config))
    assert without.status == 2
    assert without.stderr.splitlines()[1:] == [
        f"  apps.myapp.secret_file: cannot read {secrets}/myapp (No such file or directory)",
        f"  callers.orders.token_file: cannot read {secrets}/orders-token (No such file or "
        "directory)",
    ]

    secrets.mkdir()
    (secrets / "myapp").write_text("the-app-secret\n")
    (secrets / "orders-token").write_text("t" * 32 + "\n")
    as_written = await neu_gateway("check-config", "-c", str(config))
    assert as_written.status == 2
    assert as_written.stderr.splitlines() == [
        f"neu-gateway: invalid config {config}:",
        '  apps.myapp.appid: still init\'s placeholder "your-appid"',
        '  apps.myapp.upstream: still init\'s placeholder "https://your-platform-domain.example"',
    ]
    config.write_text(
        config.read_text()
        .replace("appid: your-appid", "appid: app-42")
        .replace("https://your-platform-domain.example", "https://openapi.platform.example")
    )
    checked = await neu_gateway("check-config", "-c", str(config))
    assert checked.status == 0, checked.stderr
    assert "app myapp (default): appid app-42, upstream https://" in checked.stdout


async def test_init_writes_here_by_default_and_overwrites_only_with_force(
    tmp_path: Path,
) -> None:
    first = await neu_gateway("init", cwd=tmp_path)
    assert first.status == 0, first.stderr
    config = tmp_path / "gateway.yaml"
    assert "neu-gateway serve -c gateway.yaml" in first.stdout
    config.write_text("# mine\n")

    again = await neu_gateway("init", cwd=tmp_path)
    assert again.status == 2
    assert "neu-gateway: gateway.yaml exists; --force replaces it" in again.stderr
    assert config.read_text() == "# mine\n"

    forced = await neu_gateway("init", "--force", cwd=tmp_path)
    assert forced.status == 0, forced.stderr
    first_line, second_line = config.read_text().splitlines()[:2]
    assert first_line == "# yaml-language-server: $schema=gateway.schema.json"
    assert second_line.startswith("# neu-gateway configuration, written by")
    assert (tmp_path / "gateway.schema.json").is_file()


async def test_check_config_names_the_field_and_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, "https://platform.example")
    result = await neu_gateway("check-config", "-c", str(config), env={"NEU_SECRET_DEMO": ""})
    assert result.status == 2
    assert "apps.demo.secret_env: environment variable NEU_SECRET_DEMO is empty" in result.stderr


async def test_check_config_takes_validation_off_as_the_readme_writes_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, "https://platform.example")
    config.write_text(config.read_text().replace("upstream:", "validation: off\n    upstream:"))
    result = await neu_gateway("check-config", "-c", str(config), env=ENV)
    assert result.status == 0, result.stderr
    assert "upstream https://platform.example, validation off" in result.stdout


async def test_check_config_says_an_unquoted_word_was_read_as_a_boolean(tmp_path: Path) -> None:
    config = write_config(tmp_path, "https://platform.example", logging="{format: off}")
    result = await neu_gateway("check-config", "-c", str(config), env=ENV)
    assert result.status == 2
    assert (
        "logging.format: Input should be 'json' or 'text' (YAML reads an unquoted yes, no, on, "
        "off, true or false as the boolean false; put the value in quotes)"
    ) in result.stderr


async def test_serve_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, "not a url")
    result = await neu_gateway("serve", "-c", str(config), env=ENV)
    assert result.status == 2
    assert "apps.demo.upstream: must be an http:// or https:// base URL" in result.stderr


async def test_serve_refuses_an_anonymous_public_listener(tmp_path: Path) -> None:
    config = write_config(tmp_path, "https://platform.example")
    config.write_text(config.read_text().replace("host: 127.0.0.1", "host: 0.0.0.0"))
    result = await neu_gateway("serve", "-c", str(config), env=ENV)
    assert result.status == 2
    assert "listen.host: 0.0.0.0 is not a loopback address" in result.stderr


async def test_serve_reports_a_missing_config_file(tmp_path: Path) -> None:
    result = await neu_gateway("--log-format", "text", "serve", "-c", str(tmp_path / "absent.yaml"))
    assert result.status == 2
    assert f"neu-gateway: no config file at {tmp_path / 'absent.yaml'}\n" in result.stderr
    assert "name yours with -c FILE, or write a commented one with: neu-gateway init" in (
        result.stderr
    )


async def test_serve_without_a_config_here_names_c_and_init(tmp_path: Path) -> None:
    result = await neu_gateway("--log-format", "text", "serve", cwd=tmp_path)
    assert result.status == 2
    assert result.stderr.splitlines() == [
        f"neu-gateway: no config file at {tmp_path / 'gateway.yaml'} "
        "(the default: gateway.yaml in the current directory)",
        "  name yours with -c FILE, or write a commented one with: neu-gateway init [DIR]",
    ]


async def test_a_config_that_cannot_be_read_says_why(tmp_path: Path) -> None:
    result = await neu_gateway("check-config", "-c", str(tmp_path))
    assert result.status == 2
    assert "cannot read the config file (Is a directory)" in result.stderr


async def test_sign_prints_the_published_vector(tmp_path: Path) -> None:
    config = write_config(tmp_path, "https://platform.example")
    result = await neu_gateway(
        "sign",
        "-c",
        str(config),
        "code=abc123",
        "grantType=authorization_code",
        "scope=user.info",
        "timestamp=1700000000000",
        env={"NEU_SECRET_DEMO": "demo-secret"},
    )
    assert result.status == 0
    assert (
        "canonical: appid=demo-appidcode=abc123grantType=authorization_codescope=user.info"
        "secret=******timestamp=1700000000000"
    ) in result.stdout
    assert "sign:      964bd40923c2f8911560c18cb06f580d3d26436378c11edff3f0691e4db00242" in (
        result.stdout
    )


async def test_sign_joins_repeated_keys_and_refuses_bad_arguments(tmp_path: Path) -> None:
    config = write_config(tmp_path, "https://platform.example")
    joined = await neu_gateway(
        "sign", "-c", str(config), "openIds=a", "openIds=b", "timestamp=1", env=ENV
    )
    assert "openIds=a,b" in joined.stdout
    bad = await neu_gateway("sign", "-c", str(config), "no-equals-sign", env=ENV)
    assert bad.status == 2
    assert "'no-equals-sign' is not key=value" in bad.stderr
    unknown = await neu_gateway("sign", "-c", str(config), "--app", "nope", env=ENV)
    assert unknown.status == 2
    assert "choose an app with --app (demo)" in unknown.stderr


async def test_verify_rejects_a_wrong_sign(tmp_path: Path) -> None:
    config = write_config(tmp_path, "https://platform.example")
    result = await neu_gateway(
        "verify", "-c", str(config), "tradeNo=T", "timestamp=1", "sign=" + "0" * 64, env=ENV
    )
    assert result.status == 1
    assert "INVALID" in result.stdout


async def test_serve_logs_requests_without_secrets(
    tmp_path: Path, platform_url: str, start_gateway: StartGateway
) -> None:
    import aiohttp

    gateway = await start_gateway(write_config(tmp_path, platform_url))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.url + TOKEN,
            data={"code": "one-time-code", "grantType": "authorization_code", "scope": "user.info"},
            headers={"X-Request-Id": "req-77"},
        ) as response,
    ):
        assert response.status == 200
        sign = (await response.json())["response"]["echo"]["sign"]
    await gateway.wait_for_log("request_id=req-77")
    assert "app=demo method=POST route=/neuopenapi/oauth/mini/accessToken status=200" in (
        gateway.log
    )
    for secret_thing in (SECRET, sign, "one-time-code"):
        assert secret_thing not in gateway.log


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
async def test_sandbox_command_refuses_what_is_not_a_port(port: str) -> None:
    result = await neu_gateway("sandbox", "--port", port)
    assert result.status == 2
    assert f"argument --port: '{port}' is not a port (0 to 65535" in result.stderr


async def test_sandbox_command_runs_the_platform_alone(start_command: StartCommand) -> None:
    import aiohttp

    from tests.support.sandbox_client import signed

    sandbox = await start_command(
        "sandbox",
        "--port",
        "0",
        "--explain",
        "--app",
        "demo-appid=demo-secret",
        ready_when="sandbox",
    )
    detail = sandbox.url + DETAIL
    async with aiohttp.ClientSession() as session:
        async with session.get(detail, params=signed({"tradeNo": "T"})) as response:
            body = await response.json()
        assert body["responseHeader"] == {"status": 404, "msg": "trade 'T' not found"}
        async with session.get(
            detail, params={**signed({"tradeNo": "T"}), "sign": "0"}
        ) as response:
            body = await response.json()
        assert "the platform signed: appid=demo-appidsecret=******" in body["responseHeader"]["msg"]
    # Its listener is guarded as the gateway's are (limits' defaults): an oversized header
    # block is refused in the envelope as it arrives.
    port = int(sandbox.url.rsplit(":", 1)[1])
    status, envelope = await raw_request(
        port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 140_000
    )
    assert (status, envelope["error"]) == (431, "headers_too_large")


async def test_sandbox_command_posts_login_codes_to_allowed_backend_hosts_only(
    start_command: StartCommand, receiver: CallbackReceiver
) -> None:
    import aiohttp

    # 0.0.0.0 is no loopback address, but a connection to it stays on this machine.
    sandbox = await start_command(
        "sandbox", "--port", "0", "--allow-backend-host", "0.0.0.0", ready_when="sandbox"
    )
    allowed = receiver.url.replace("127.0.0.1", "0.0.0.0")
    async with aiohttp.ClientSession() as session:
        for backend_url, status in ((allowed, 200), ("http://10.0.0.8/login", 403)):
            async with session.post(
                sandbox.url + "/sandbox/open-mini-app",
                data={"user": "alice", "backend_url": backend_url},
            ) as response:
                assert response.status == status, await response.text()
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "the sandbox listens on a loopback address only"),
        (["--app", "no-secret"], "--app takes APPID=SECRET; a value has no '='"),
        (
            ["--allow-backend-host", "http://backend:80"],
            "--allow-backend-host 'http://backend:80' is not a bare host name or IP address",
        ),
    ],
    ids=["public address", "bad app", "backend host with a scheme"],
)
async def test_sandbox_command_refuses(args: list[str], message: str) -> None:
    result = await neu_gateway("sandbox", *args)
    assert result.status == 2
    assert message in result.stderr


async def test_serve_warns_loudly_when_anonymous_on_a_public_address(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    config = write_config(tmp_path, "https://platform.example", insecure_allow_anonymous="true")
    config.write_text(config.read_text().replace("host: 127.0.0.1", "host: 0.0.0.0"))
    gateway = await start_gateway(config)
    assert "WARNING neu_gateway INSECURE: listening on 0.0.0.0 with no caller authentication" in (
        gateway.log
    )


async def test_callers_make_a_public_listener_acceptable(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "https://platform.example",
        callers="{orders: {token_env: ORDERS_TOKEN, apps: [demo], allow: ['* /neuopenapi/*']}}",
    )
    config.write_text(config.read_text().replace("host: 127.0.0.1", "host: 0.0.0.0"))
    result = await neu_gateway(
        "check-config", "-c", str(config), env={**ENV, "ORDERS_TOKEN": "t" * 32}
    )
    assert result.status == 0, result.stderr


def config_with_listeners(directory: Path, taken: str, port: int) -> Path:
    """Every listener on a free port but the one at `taken`, which gets `port`."""
    ports = {"listen": 0, "sandbox.listen": 0, "callbacks.listen": 0, taken: port}
    path = directory / "gateway.yaml"
    path.write_text(
        f"listen: {{host: 127.0.0.1, port: {ports['listen']}}}\n"
        "apps:\n  demo: {appid: demo-appid, secret_env: NEU_SECRET_DEMO, upstream: sandbox}\n"
        f"sandbox: {{listen: {{port: {ports['sandbox.listen']}}}}}\n"
        f"callbacks: {{listen: {{port: {ports['callbacks.listen']}}}, "
        f"store: 'sqlite://{directory}/outbox.db'}}\n"
    )
    return path


@pytest.mark.parametrize("key", ["listen", "sandbox.listen", "callbacks.listen"])
async def test_serve_names_the_listener_whose_port_is_taken(tmp_path: Path, key: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = config_with_listeners(tmp_path, key, port)
        result = await neu_gateway("--log-format", "text", "serve", "-c", str(config), env=ENV)
    assert result.status == 1
    [line] = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert line == (
        f"neu-gateway: cannot start: {key}: cannot listen on 127.0.0.1:{port}: "
        f"the port is in use by another process (stop it, or change {key})"
    )
    # Whatever had started is closed again, quietly.
    assert "Traceback" not in result.stderr
    assert " ERROR " not in result.stderr


async def test_an_outbox_that_cannot_be_opened_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = write_config(
        tmp_path, callbacks=f"{{listen: {{port: 0}}, store: 'sqlite://{blocker}/outbox.db'}}"
    )
    served = await neu_gateway("--log-format", "text", "serve", "-c", str(config), env=ENV)
    assert served.status == 1
    assert (
        f"neu-gateway: cannot start: callbacks.store: cannot open sqlite://{blocker}/outbox.db ("
    ) in served.stderr
    assert "Traceback" not in served.stderr
    listed = await neu_gateway("callbacks", "list", "-c", str(config), env=ENV)
    assert listed.status == 2
    assert "cannot read the outbox" in listed.stderr


@pytest.mark.parametrize("command", [["list"], ["replay", "1"]], ids=["list", "replay"])
async def test_callbacks_commands_say_callbacks_are_off_and_create_no_outbox(
    tmp_path: Path, command: list[str]
) -> None:
    store = tmp_path / "outbox" / "outbox.db"
    config = write_config(tmp_path, callbacks=f"{{store: 'sqlite://{store}'}}")
    result = await neu_gateway("callbacks", *command, "-c", str(config), env=ENV)
    assert result.status == 2
    assert "callbacks are off" in result.stderr
    assert "(no callbacks.listen)" in result.stderr
    assert not store.parent.exists()


async def test_serve_listen_overrides_the_files_address_reloads_included(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    import signal

    import aiohttp

    config = write_config(tmp_path)
    in_file, given = free_port(), free_port()
    config.write_text(config.read_text().replace("port: 0}", f"port: {in_file}}}", 1))
    gateway = await start_gateway(config, extra_args=("--listen", f"127.0.0.1:{given}"))
    assert gateway.url == f"http://127.0.0.1:{given}"

    async def detail_answers() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.get(gateway.url + DETAIL, params={"tradeNo": "none"}) as response,
        ):
            assert (await response.json())["responseHeader"]["status"] == 404

    await detail_answers()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", in_file)):
        pass
    # The file's port changes: a reload still runs on --listen's, and says nothing of it.
    config.write_text(config.read_text().replace(f"port: {in_file}}}", f"port: {free_port()}}}"))
    gateway.process.send_signal(signal.SIGHUP)
    await gateway.wait_for_log("config reloaded from")
    assert "kept until a restart" not in gateway.log
    await detail_answers()
