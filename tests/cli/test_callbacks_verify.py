"""`neu-gateway callbacks verify`, run in this process: a delivery saved as the service received
it (signed by the gateway's own signer, and once sent by a real DeliveryWorker) verifies with
its secret, from a file, a variable or the config; what would not verify says why; Standard
Webhooks' own verifier agrees; and no path shows the secret."""

from __future__ import annotations

import asyncio
import base64
import io
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.callbacks.delivery import DeliveryPolicy, DeliveryWorker, Destination
from gateway.callbacks.outbox import SqliteOutbox
from gateway.cli.main import parser_of_commands
from gateway.core.clock import SystemClock
from gateway.core.webhooks import signed_headers, signing_key
from tests.cli.support import Ran, run
from tests.support.processes import write_config


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


SECRET = whsec(bytes(range(32)))
OTHER = whsec(bytes(range(100, 132)))
# What no output may show: each secret whole, and its key's base64 alone.
SHOWN_NEVER = [s for secret in (SECRET, OTHER) for s in (secret, secret.removeprefix("whsec_"))]
BODY = '{"tradeNo":"T1","transactionStatus":2,"note":"café"}\n  '.encode()
MESSAGE_ID = "T1:2"
# 3 h 2 m 30 s: a few seconds' run cannot move it out of "3h 2m".
OLD_S = 3 * 3600 + 2 * 60 + 30


def signed(
    *secrets: str, body: bytes = BODY, age_s: int = 0, message_id: str = MESSAGE_ID
) -> dict[str, str]:
    keys = [signing_key(secret) for secret in secrets]
    return signed_headers(keys, message_id, int(time.time()) - age_s, body)


def saved(
    headers: Mapping[str, str], body: bytes = BODY, eol: str = "\r\n", request_line: bool = True
) -> bytes:
    """A delivery written down as it was received."""
    lines = ["POST /payments HTTP/1.1"] if request_line else []
    lines += ["Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
    return "".join(f"{line}{eol}" for line in lines).encode() + eol.encode() + body


def verifying(capsys: pytest.CaptureFixture[str], *argv: str) -> Ran:
    ran = run(capsys, "callbacks", "verify", *argv)
    for secret in SHOWN_NEVER:
        assert secret not in ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    return ran


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "signing-secret"
    # As `echo` or a Kubernetes secret writes it: the newline is not part of the secret.
    path.write_text(f"{SECRET}\n")
    return path


@pytest.fixture
def delivery(tmp_path: Path) -> Path:
    return tmp_path / "delivery.http"


def test_a_delivery_signed_with_the_secret_verifies(
    secret_file: Path, delivery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery.write_bytes(saved(signed(SECRET)))
    ran = verifying(capsys, "--secret-file", str(secret_file), str(delivery))
    assert (ran.status, ran.stderr) == (0, "")
    stamp = time.strftime("%Y-%m-%dT%H:%M", time.gmtime())
    assert ran.stdout.startswith(
        f"verified: webhook-id T1:2, signed with --secret-file's secret (1 of 1), timestamp {stamp}"
    ), ran.stdout
    assert ran.stdout.endswith("s ago)\n")


def test_the_secret_from_an_environment_variable(
    delivery: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERS_SIGNING_SECRET", SECRET)
    delivery.write_bytes(saved(signed(SECRET), eol="\n", request_line=False))
    ran = verifying(capsys, "--secret-env", "ORDERS_SIGNING_SECRET", str(delivery))
    assert ran.status == 0, ran.stderr
    assert "signed with --secret-env's secret (1 of 1)" in ran.stdout


@pytest.mark.parametrize(
    ("change", "why"),
    [
        pytest.param(
            lambda: saved(signed(OTHER)), "no signature matches", id="another secret signed it"
        ),
        pytest.param(
            lambda: saved(signed(SECRET), body=BODY.replace(b"T1", b"T2")),
            "no signature matches",
            id="the body changed",
        ),
        pytest.param(
            lambda: saved({**signed(SECRET), "webhook-id": "T1:3"}),
            "no signature matches",
            id="the id changed",
        ),
        pytest.param(
            lambda: saved({**signed(SECRET), "webhook-timestamp": str(int(time.time()) + 1)}),
            "no signature matches",
            id="the timestamp changed",
        ),
        pytest.param(
            lambda: saved({**signed(SECRET), "webhook-timestamp": "soon"}),
            "webhook-timestamp is not whole seconds since the epoch",
            id="a timestamp that is not a number",
        ),
    ],
)
def test_what_does_not_verify_is_refused_saying_why(
    secret_file: Path,
    delivery: Path,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[], bytes],
    why: str,
) -> None:
    delivery.write_bytes(change())
    ran = verifying(capsys, "--secret-file", str(secret_file), str(delivery))
    assert (ran.status, ran.stdout) == (1, "")
    assert ran.stderr.startswith(f"neu-gateway: not verified: {why}"), ran.stderr


def test_a_refusal_names_what_was_tried_and_what_was_read(
    secret_file: Path, delivery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery.write_bytes(saved(signed(OTHER, age_s=OLD_S)))
    ran = verifying(capsys, "--secret-file", str(secret_file), str(delivery))
    assert ran.status == 1
    _, read, tried = ran.stderr.splitlines()
    assert read.startswith("  webhook-id T1:2, timestamp ")
    assert read.endswith(f"(3h 2m ago), body {len(BODY)} bytes, 1 signature")
    assert tried == "  tried: --secret-file's secret"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_each_missing_header_is_named(
    secret_file: Path, delivery: Path, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    headers = {name: value for name, value in signed(SECRET).items() if name != missing}
    delivery.write_bytes(saved(headers))
    ran = verifying(capsys, "--secret-file", str(secret_file), str(delivery))
    assert ran.status == 1
    assert ran.stderr.splitlines() == [
        f"neu-gateway: not verified: no {missing} header",
        f"  headers found: {', '.join(sorted(['content-type', *headers]))}",
    ]


@pytest.mark.parametrize(
    ("edit", "how"),
    [
        pytest.param(lambda body: body + b"\n", "without its last line end", id="a final LF"),
        pytest.param(
            lambda body: body.replace(b"\n", b"\r\n"),
            "with LF line ends for its CRLF ones",
            id="LF made CRLF",
        ),
    ],
)
def test_a_body_whose_line_ends_an_editor_changed_is_refused_and_the_change_named(
    secret_file: Path,
    delivery: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[bytes], bytes],
    how: str,
) -> None:
    delivery.write_bytes(saved(signed(SECRET), body=edit(BODY)))
    ran = verifying(capsys, "--secret-file", str(secret_file), str(delivery))
    assert ran.status == 1
    assert ran.stderr.splitlines()[-1] == (
        f"  the body would verify {how}: the saved body's line ends were changed (an editor, "
        "a copy and paste, git's autocrlf?); save it byte for byte"
    )


def test_an_old_delivery_verifies_its_age_shown_unless_a_tolerance_is_given(
    secret_file: Path, delivery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery.write_bytes(saved(signed(SECRET, age_s=OLD_S)))
    ran = verifying(capsys, "--secret-file", str(secret_file), str(delivery))
    assert ran.status == 0, ran.stderr
    verified, note = ran.stdout.splitlines()
    assert verified.endswith("(3h 2m ago)")
    assert note == (
        "  a receiver would refuse it now: it allows 300 s between the timestamp and its clock "
        "(--tolerance-s N checks that too)"
    )
    ran = verifying(
        capsys, "--secret-file", str(secret_file), "--tolerance-s", "300", str(delivery)
    )
    assert (ran.status, ran.stdout) == (1, "")
    first, _, matches = ran.stderr.splitlines()
    assert first.startswith("neu-gateway: not verified: the timestamp is 109")
    assert first.endswith(" s old, beyond the 300 s a receiver allows")
    assert matches == "  the signature matches: signed with --secret-file's secret (1 of 1)"
    # Within a tolerance as wide as its age, it verifies.
    ran = verifying(
        capsys, "--secret-file", str(secret_file), "--tolerance-s", "86400", str(delivery)
    )
    assert ran.status == 0


def test_a_timestamp_ahead_is_said_to_be(
    secret_file: Path, delivery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery.write_bytes(saved(signed(SECRET, age_s=-2 * 86400 - 3 * 3600 - 60)))
    ran = verifying(capsys, "--secret-file", str(secret_file), str(delivery))
    assert ran.status == 0
    assert "(2d 3h ahead of this clock)" in ran.stdout


def test_the_delivery_on_stdin(
    secret_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(saved(signed(SECRET)))))
    ran = verifying(capsys, "--secret-file", str(secret_file), "-")
    assert ran.status == 0, ran.stderr


def test_a_body_and_its_headers_saved_apart(
    secret_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(BODY)
    # Header names in any case, as a log or a framework may have written them.
    headers = [f"{name.upper()}: {value}" for name, value in signed(SECRET).items()]
    given = [arg for header in headers for arg in ("-H", header)]
    ran = verifying(capsys, "--secret-file", str(secret_file), "--body", str(body), *given)
    assert ran.status == 0, ran.stderr
    ran = verifying(
        capsys, "--secret-file", str(secret_file), "--body", str(body), *given[:-2], "-H", "x: y"
    )
    assert ran.status == 1
    assert ran.stderr.startswith("neu-gateway: not verified: no webhook-signature header")


def test_the_body_on_stdin(
    secret_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BODY)))
    given = [arg for item in signed(SECRET).items() for arg in ("-H", ": ".join(item))]
    ran = verifying(capsys, "--secret-file", str(secret_file), "--body", "-", *given)
    assert ran.status == 0, ran.stderr


# --- the config's secrets, during a rotation --------------------------------------------------


@pytest.fixture
def rotating_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose app signs with SECRET (current) and OTHER (being rotated away from)."""
    monkeypatch.setenv("NEU_SECRET_DEMO", "s3cret-value")
    monkeypatch.setenv("OLD_SIGNING_SECRET", OTHER)
    current = tmp_path / "signing-secret"
    current.write_text(SECRET)
    callbacks = (
        f"{{deliver_to: 'http://127.0.0.1:9/pay', signing_secret_file: '{current}', "
        "signing_secret_previous_env: OLD_SIGNING_SECRET}"
    )
    return write_config(tmp_path, app_callbacks=callbacks)


@pytest.mark.parametrize(
    ("secrets", "signer"),
    [
        ((SECRET,), "apps.demo.callbacks.signing_secret_file (1 of 2)"),
        ((OTHER,), "apps.demo.callbacks.signing_secret_previous_env (2 of 2)"),
        ((SECRET, OTHER), "apps.demo.callbacks.signing_secret_file (1 of 2)"),
    ],
    ids=["by the new secret", "by the old one", "by both, as the gateway signs in a rotation"],
)
def test_the_configs_secrets_and_which_one_signed(
    rotating_config: Path,
    delivery: Path,
    capsys: pytest.CaptureFixture[str],
    secrets: tuple[str, ...],
    signer: str,
) -> None:
    delivery.write_bytes(saved(signed(*secrets)))
    ran = verifying(capsys, "-c", str(rotating_config), "--app", "demo", str(delivery))
    assert ran.status == 0, ran.stderr
    assert f"signed with {signer}, timestamp" in ran.stdout


def test_with_the_configs_secrets_a_foreign_signature_names_both_tried(
    rotating_config: Path, delivery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery.write_bytes(saved(signed(whsec(bytes(32)))))
    ran = verifying(capsys, "-c", str(rotating_config), "--app", "demo", str(delivery))
    assert ran.status == 1
    assert ran.stderr.splitlines()[-1] == (
        "  tried: apps.demo.callbacks.signing_secret_file, "
        "apps.demo.callbacks.signing_secret_previous_env"
    )


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("shop", "--app shop: no such app in {config} (its apps: demo)"),
        (
            "demo",
            "--app demo: apps.demo.callbacks has no signing secret (signing_secret_file, _env "
            "or signing_secret): its deliveries go unsigned",
        ),
    ],
    ids=["an app not in the config", "an app whose deliveries are unsigned"],
)
def test_an_app_without_signing_secrets_is_refused(
    tmp_path: Path,
    delivery: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    app: str,
    message: str,
) -> None:
    monkeypatch.setenv("NEU_SECRET_DEMO", "s3cret-value")
    config = write_config(tmp_path)
    delivery.write_bytes(saved(signed(SECRET)))
    ran = verifying(capsys, "-c", str(config), "--app", app, str(delivery))
    assert (ran.status, ran.stderr) == (2, f"neu-gateway: {message.format(config=config)}\n")


def test_a_config_that_cannot_be_read_is_said_so(
    tmp_path: Path, delivery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery.write_bytes(saved(signed(SECRET)))
    ran = verifying(capsys, "-c", str(tmp_path / "none.yaml"), "--app", "demo", str(delivery))
    assert ran.status == 2
    assert ran.stderr.startswith(f"neu-gateway: no config file at {tmp_path / 'none.yaml'}")


# --- a real delivery, as the service received it ---------------------------------------------


async def test_a_delivery_the_worker_sent_verifies_as_captured(
    tmp_path: Path, aiohttp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker POSTs to a service that writes down what arrived, request line, headers and
    body, as they came: the command verifies that file, and so does Standard Webhooks."""
    capture = tmp_path / "captured.http"
    arrived = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        head = f"{request.method} {request.path_qs} {version}\r\n".encode()
        head += b"".join(name + b": " + value + b"\r\n" for name, value in request.raw_headers)
        capture.write_bytes(head + b"\r\n" + await request.read())
        arrived.set()
        return web.Response(text="ok")

    service = web.Application()
    service.router.add_post("/payments", receive)
    server = await aiohttp_server(service)
    outbox = SqliteOutbox(tmp_path / "outbox.db")
    clock = SystemClock()
    await outbox.add("demo", "T9", 2, BODY, clock.now_ms() / 1000)
    keys = (signing_key(SECRET), signing_key(OTHER))
    destination = Destination(str(server.make_url("/payments")), keys)
    worker = DeliveryWorker(outbox, {"demo": destination}, DeliveryPolicy(timeout_s=5), clock)
    worker.start()
    try:
        async with asyncio.timeout(10):
            await arrived.wait()
    finally:
        await worker.stop()
        await outbox.close()

    for secret, signer in ((SECRET, "1 of 1"), (OTHER, "1 of 1")):
        path = tmp_path / "secret"
        path.write_text(secret)
        ran = verifying(capsys, "--secret-file", str(path), "--tolerance-s", "300", str(capture))
        assert ran.status == 0, ran.stderr
        assert f"verified: webhook-id T9:2, signed with --secret-file's secret ({signer})" in (
            ran.stdout
        )
    headers, body = split(capture.read_bytes())
    assert body == BODY
    for secret in (SECRET, OTHER):
        assert Webhook(secret).verify(body, headers, json_parse=False) is None


def split(saved_delivery: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = saved_delivery.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")[1:]
    return {name: value.strip() for name, _, value in (line.partition(":") for line in lines)}, body


# --- Standard Webhooks' own verifier agrees --------------------------------------------------


def without(name: str) -> dict[str, str]:
    return {key: value for key, value in signed(SECRET).items() if key != name}


# Each case's headers made as the test runs: made at collection, a case could be minutes old.
AGREEMENT = [
    pytest.param(lambda: signed(SECRET), BODY, True, id="signed with the secret"),
    pytest.param(lambda: signed(OTHER, SECRET), BODY, True, id="signed in a rotation"),
    pytest.param(lambda: signed(OTHER), BODY, False, id="another secret"),
    pytest.param(lambda: signed(SECRET), BODY + b" ", False, id="a changed body"),
    pytest.param(lambda: signed(SECRET, age_s=400), BODY, False, id="older than 5 minutes"),
    pytest.param(lambda: signed(SECRET, age_s=-400), BODY, False, id="5 minutes ahead"),
    pytest.param(lambda: without("webhook-id"), BODY, False, id="no webhook-id"),
    pytest.param(lambda: without("webhook-timestamp"), BODY, False, id="no webhook-timestamp"),
    pytest.param(lambda: without("webhook-signature"), BODY, False, id="no webhook-signature"),
]


@pytest.mark.parametrize(("make", "body", "accepted"), AGREEMENT)
def test_standard_webhooks_agrees(
    secret_file: Path,
    delivery: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[], dict[str, str]],
    body: bytes,
    accepted: bool,
) -> None:
    headers = make()
    delivery.write_bytes(saved(headers, body))
    # A receiver's tolerance, as its library applies it.
    ran = verifying(
        capsys, "--secret-file", str(secret_file), "--tolerance-s", "300", str(delivery)
    )
    try:
        Webhook(SECRET).verify(body, headers, json_parse=False)
        theirs = True
    except WebhookVerificationError:
        theirs = False
    assert (ran.status == 0, theirs) == (accepted, accepted), ran.stderr


# --- what cannot be used: exit 2, the reason, never the secret -------------------------------


@pytest.mark.parametrize(
    ("content", "why"),
    [
        pytest.param(None, "cannot read it (No such file or directory)", id="no file"),
        pytest.param("\n", "the file is empty", id="an empty file"),
        pytest.param(
            SECRET.removeprefix("whsec_"),
            "not a usable signing secret: must start with whsec_",
            id="the key without whsec_",
        ),
        pytest.param(
            SECRET + "!!",
            "not a usable signing secret: the part after whsec_ is not base64",
            id="not base64",
        ),
        pytest.param(
            whsec(bytes(8)), "not a usable signing secret: its key is 8 bytes", id="a short key"
        ),
        pytest.param(f"{OTHER}\n{SECRET}\n", "cannot read it (more than one line)", id="two"),
    ],
)
def test_a_secret_file_that_cannot_be_used_says_why_never_the_value(
    tmp_path: Path,
    delivery: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    why: str,
) -> None:
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    delivery.write_bytes(saved(signed(SECRET)))
    ran = verifying(capsys, "--secret-file", str(path), str(delivery))
    assert ran.status == 2
    assert ran.stderr.startswith(f"neu-gateway: --secret-file {path}: {why}"), ran.stderr
    assert ran.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "environment variable SIGNING is not set"),
        ("", "environment variable SIGNING is empty"),
        ("s3cret-value", "not a usable signing secret: must start with whsec_"),
    ],
    ids=["unset", "empty", "not whsec_"],
)
def test_a_secret_variable_that_cannot_be_used_says_why_never_the_value(
    delivery: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
    why: str,
) -> None:
    monkeypatch.delenv("SIGNING", raising=False)
    if value is not None:
        monkeypatch.setenv("SIGNING", value)
    delivery.write_bytes(saved(signed(SECRET)))
    ran = verifying(capsys, "--secret-env", "SIGNING", str(delivery))
    assert ran.status == 2
    assert ran.stderr.startswith(f"neu-gateway: --secret-env SIGNING: {why}")
    assert "s3cret-value" not in ran.stderr


@pytest.mark.parametrize(
    ("content", "why"),
    [
        pytest.param(b"", "no empty line after the headers", id="empty"),
        pytest.param(BODY, "no empty line after the headers", id="the body alone"),
        pytest.param(f"{SECRET}\n\n".encode(), "line 1 is not a header line", id="a secret"),
        pytest.param(
            b"webhook-id: a\r\n folded\r\n\r\n", "line 2 starts with white space", id="folding"
        ),
        pytest.param(
            b"webhook-id: a\x00b\r\n\r\n",
            "line 1: the value of webhook-id holds a control character (0x00)",
            id="a NUL in the head",
        ),
        pytest.param(
            b"Webhook-Id: a\r\nwebhook-id: b\r\n\r\n",
            "line 2: a second webhook-id header; a delivery carries one",
            id="two ids",
        ),
    ],
)
def test_a_delivery_that_cannot_be_read_says_why_never_its_lines(
    secret_file: Path,
    delivery: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    why: str,
) -> None:
    delivery.write_bytes(content)
    ran = verifying(capsys, "--secret-file", str(secret_file), str(delivery))
    assert (ran.status, ran.stdout) == (2, "")
    assert ran.stderr.startswith(f"neu-gateway: {why}"), ran.stderr


def test_header_bytes_that_are_not_utf_8_are_no_crash(
    secret_file: Path, delivery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = saved(signed(SECRET)).replace(b"Content-Type: application/json", b"X-Note: caf\xe9")
    delivery.write_bytes(head)
    assert verifying(capsys, "--secret-file", str(secret_file), str(delivery)).status == 0
    delivery.write_bytes(saved(signed(SECRET)).replace(b"T1:2", b"T1:\xff"))
    ran = verifying(capsys, "--secret-file", str(secret_file), str(delivery))
    assert (ran.status, ran.stderr) == (
        1,
        "neu-gateway: not verified: webhook-id holds bytes that are not UTF-8 text, which no "
        "sender signs\n",
    )


def test_what_a_terminal_would_act_on_is_shown_escaped(
    secret_file: Path, delivery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message_id = "T1:\u009b2J" + "x" * 200
    delivery.write_bytes(saved(signed(SECRET, message_id=message_id)))
    ran = verifying(capsys, "--secret-file", str(secret_file), str(delivery))
    assert ran.status == 0, ran.stderr
    assert "webhook-id T1:\\x9b2Jxxx" in ran.stdout
    assert "\u009b" not in ran.stdout
    assert "x" * 80 not in ran.stdout


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--body", "b.json", "delivery.http"], "give either DELIVERY or --body FILE with -H"),
        ([], "give the DELIVERY as received"),
        (["-H", "webhook-id: a", "delivery.http"], "-H goes with --body"),
        (["--body", "b.json", "-H", "no colon"], "-H #1 is not a header line (Name: value)"),
        (["--body", "b.json", "-H", "Bad Name: x"], "-H #1 is not a header line (Name: value)"),
    ],
    ids=["both", "neither", "-H with a DELIVERY", "-H without a colon", "-H with a space"],
)
def test_arguments_that_do_not_go_together_are_refused(
    secret_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    why: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.json").write_bytes(BODY)
    ran = verifying(capsys, "--secret-file", str(secret_file), *argv)
    assert ran.status == 2
    assert ran.stderr.startswith(f"neu-gateway: {why}"), ran.stderr


def test_c_without_app_is_refused(
    secret_file: Path, delivery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = verifying(capsys, "--secret-file", str(secret_file), "-c", "g.yaml", str(delivery))
    assert ran.status == 2
    assert ran.stderr == (
        "neu-gateway: -c names the config whose --app secrets to use: give --app NAME\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["delivery.http"],
        ["--secret-file", "s", "--secret-env", "S", "delivery.http"],
        ["--secret-env", "S", "--tolerance-s", "-1", "delivery.http"],
        ["--secret-env", "S", "--tolerance-s", "nan", "delivery.http"],
    ],
    ids=["no secret", "two secrets", "a negative tolerance", "a tolerance not a number"],
)
def test_the_parser_refuses_a_missing_secret_or_a_bad_tolerance(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser_of_commands().parse_args(["callbacks", "verify", *argv])
    assert exited.value.code == 2
    assert "usage: neu-gateway callbacks verify" in capsys.readouterr().err


def test_the_help_says_how_line_ends_matter_and_what_receivers_allow(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parser_of_commands().parse_args(["callbacks", "verify", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "an editor that rewrites the file's line ends" in shown
    assert "receivers allow 300 s" in shown


def test_stdin_closed_is_said_so(
    secret_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    ran = verifying(capsys, "--secret-file", str(secret_file), "-")
    assert (ran.status, ran.stderr) == (2, "neu-gateway: stdin is closed: - has nothing to read\n")


def test_a_long_list_of_headers_found_is_cut_short(
    secret_file: Path, delivery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    delivery.write_bytes(saved({f"x-pad-{n:03}": "v" for n in range(300)}))
    ran = verifying(capsys, "--secret-file", str(secret_file), str(delivery))
    assert ran.status == 1
    found = ran.stderr.splitlines()[-1]
    assert found.startswith("  headers found: content-type, x-pad-000, x-pad-001, ")
    assert found.endswith(", x-pad-018 and 281 more")
