"""apps.<name>.callbacks.signing_secret*: read from a file, a variable or (the demo's) inline,
checked as Standard Webhooks reads a secret, refused by name and never by value."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.config import credentials
from gateway.config.live import kept_from_the_start
from gateway.config.load import from_mapping
from gateway.core.secrets import DEMO_SIGNING_SECRET
from tests.config.documents import app, problems_of

NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
SHORT = "whsec_" + base64.b64encode(b"s" * 16).decode()


def with_callbacks(**callbacks: Any) -> dict[str, Any]:
    return {"apps": {"demo": app(callbacks={"deliver_to": "http://orders:9000/p", **callbacks})}}


def test_a_secret_from_a_file_and_the_previous_one_from_a_variable(tmp_path: Path) -> None:
    path = tmp_path / "signing"
    path.write_text(NEW + "\n")
    document = with_callbacks(
        signing_secret_file=str(path), signing_secret_previous_env="OLD_SIGNING"
    )
    config = from_mapping(document, {"S": "s", "OLD_SIGNING": OLD})
    assert [s.reveal() for s in config.apps["demo"].signing_secrets] == [NEW, OLD]
    # Both kept out of every log line, with and without their prefix.
    for secret in (NEW, OLD):
        assert secret in config.credentials()
        assert secret.removeprefix("whsec_") in config.credentials()
    keys = [source.key for source in config.credential_sources]
    assert "apps.demo.callbacks.signing_secret_file" in keys
    assert "apps.demo.callbacks.signing_secret_previous_env" in keys
    [kept] = [line for line in kept_from_the_start(config) if "signing" in line]
    assert kept.startswith("apps.demo.callbacks.signing_secret_previous_env: ")
    assert "OLD_SIGNING" in kept


def test_no_signing_secret_no_signing() -> None:
    config = from_mapping(with_callbacks(), {"S": "s"})
    assert config.apps["demo"].signing_secrets == ()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "must start with whsec_", id="bare"),
        pytest.param(SHORT, "its key is 16 bytes", id="short"),
        pytest.param("whsec_" + "x" * 33, "not base64", id="not base64"),
    ],
)
def test_an_unusable_secret_is_refused_by_key_without_its_value(
    tmp_path: Path, value: str, reason: str
) -> None:
    path = tmp_path / "signing"
    path.write_text(value)
    for callbacks, environ, key in (
        ({"signing_secret_file": str(path)}, {}, "signing_secret_file"),
        ({"signing_secret_env": "SIGN"}, {"SIGN": value}, "signing_secret_env"),
        (
            {"signing_secret_file": str(path), "signing_secret_previous_env": "SIGN"},
            {"SIGN": value},
            "signing_secret_previous_env",
        ),
    ):
        problems = problems_of(with_callbacks(**callbacks), {"S": "s", **environ})
        [problem] = [p for p in problems if key in p]
        assert problem.startswith(f"apps.demo.callbacks.{key}: ")
        assert reason in problem
        assert value.removeprefix("whsec_") not in " ".join(problems)


@pytest.mark.parametrize(
    ("callbacks", "reason"),
    [
        pytest.param(
            {"signing_secret": DEMO_SIGNING_SECRET, "signing_secret_env": "X"},
            "give one of signing_secret_file, signing_secret_env, signing_secret",
            id="two sources",
        ),
        pytest.param(
            {"signing_secret_previous_env": "X"},
            "needs the new one in signing_secret_file",
            id="previous alone",
        ),
        pytest.param(
            {
                "signing_secret": DEMO_SIGNING_SECRET,
                "signing_secret_previous_env": "X",
                "signing_secret_previous_file": "/x",
            },
            "signing_secret_previous_file or signing_secret_previous_env, not both",
            id="two previous",
        ),
    ],
)
def test_the_sources_are_one_each_and_a_previous_one_goes_with_a_current_one(
    callbacks: dict[str, Any], reason: str
) -> None:
    [problem] = problems_of(with_callbacks(**callbacks), {"S": "s", "X": OLD})
    assert problem.startswith("apps.demo.callbacks: ")
    assert reason in problem


def test_a_missing_file_and_an_unset_variable_are_named(tmp_path: Path) -> None:
    problems = problems_of(
        with_callbacks(
            signing_secret_file=str(tmp_path / "absent"), signing_secret_previous_env="UNSET"
        ),
        {"S": "s"},
    )
    assert problems == [
        f"apps.demo.callbacks.signing_secret_file: cannot read {tmp_path / 'absent'} "
        "(No such file or directory)",
        "apps.demo.callbacks.signing_secret_previous_env: environment variable UNSET is not set",
    ]


def test_only_the_demo_secret_is_written_inline_without_a_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credentials, "INLINE_WARNED", set())
    with caplog.at_level(logging.WARNING):
        from_mapping(with_callbacks(signing_secret=DEMO_SIGNING_SECRET), {"S": "s"})
        assert caplog.text == ""
        from_mapping(with_callbacks(signing_secret=NEW), {"S": "s"})
    assert "apps.demo.callbacks.signing_secret: the secret is written in the config" in caplog.text
    assert "use callbacks.signing_secret_file" in caplog.text
    assert NEW.removeprefix("whsec_") not in caplog.text


def test_a_previous_secret_that_is_the_current_one_is_warned_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    document = with_callbacks(signing_secret_env="NEW", signing_secret_previous_env="OLD")
    with caplog.at_level(logging.WARNING):
        from_mapping(document, {"S": "s", "NEW": NEW, "OLD": NEW})
    assert "apps.demo.callbacks: the previous signing secret is the one in force" in caplog.text
    assert NEW.removeprefix("whsec_") not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        from_mapping(document, {"S": "s", "NEW": NEW, "OLD": OLD})
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("inline", "environ"),
    [
        pytest.param(NEW, {}, id="written inline"),
        pytest.param("${SIGNING}", {"SIGNING": NEW}, id="a placeholder"),
    ],
)
def test_the_config_in_force_prints_no_signing_secret(inline: str, environ: dict[str, str]) -> None:
    # An App printed (a debugging line, a test's failure) showed the parsed callbacks
    # section, the secret as it was written.
    config = from_mapping(with_callbacks(signing_secret=inline), {"S": "s", **environ})
    [secret] = config.apps["demo"].signing_secrets
    assert secret.reveal() == NEW
    for printed in (repr(config), str(config), repr(config.apps["demo"])):
        assert NEW.removeprefix("whsec_") not in printed
