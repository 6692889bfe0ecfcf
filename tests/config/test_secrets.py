"""The `secrets` section, where each credential comes from, what a reload cannot renew, and
the inline-secret warning given once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.config import credentials
from gateway.config.live import LiveConfig, kept_from_the_start
from gateway.config.load import from_mapping
from gateway.config.model import CredentialSource
from tests.config.documents import app, problems_of

CALLER = {"apps": ["demo"], "allow": ["* /neuopenapi/*"]}
TOKEN = "a-caller-token-0123456789"


def test_secret_files_are_watched_every_5_s_by_default() -> None:
    assert from_mapping({"apps": {"demo": app()}}, {"S": "s"}).secrets.watch_s == 5


@pytest.mark.parametrize("watch_s", [0, 0.1, 30, 3600])
def test_watch_s_takes_0_or_a_sane_interval(watch_s: float) -> None:
    config = from_mapping({"apps": {"demo": app()}, "secrets": {"watch_s": watch_s}}, {"S": "s"})
    assert config.secrets.watch_s == watch_s


@pytest.mark.parametrize(
    ("watch_s", "problem"),
    [
        (-1, "secrets.watch_s: Input should be greater than or equal to 0"),
        (0.01, "secrets.watch_s: must be 0 (not watched) or from 0.1 to 3600"),
        (3601, "secrets.watch_s: Input should be less than or equal to 3600"),
        (False, "secrets.watch_s: must be a number of seconds (0: not watched), not true or false"),
    ],
    ids=["negative", "busy", "above an hour", "a YAML off"],
)
def test_watch_s_out_of_bounds_is_refused(watch_s: float, problem: str) -> None:
    [said] = problems_of({"apps": {"demo": app()}, "secrets": {"watch_s": watch_s}})
    assert said.startswith(problem)


def test_watch_s_is_kept_until_a_restart() -> None:
    document = {"apps": {"demo": app()}}
    live = LiveConfig(from_mapping(document, {"S": "s"}), loaded_at=1.0)
    pinned = live.swap(
        from_mapping({**document, "secrets": {"watch_s": 1}}, {"S": "s"}), loaded_at=2.0
    )
    assert pinned == ["secrets.watch_s"]
    assert live.current.secrets.watch_s == 5


def test_each_credential_names_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN)
    document = {
        "apps": {"env": app(), "inline": app(secret_env=None, secret="x")},
        "callers": {"c": {**CALLER, "apps": ["env"], "token_file": str(tmp_path / "token")}},
    }
    sources = from_mapping(document, {"S": "s"}).credential_sources
    assert sources == (
        CredentialSource(owner="apps.env", what="secret", env="S"),
        CredentialSource(owner="apps.inline", what="secret"),
        CredentialSource(owner="callers.c", what="token", file=tmp_path / "token"),
    )
    assert [source.key for source in sources] == [
        "apps.env.secret_env",
        "apps.inline.secret",
        "callers.c.token_file",
    ]


def test_a_reload_names_every_secret_and_token_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    document = {
        "apps": {"env": app(), "file": app(secret_env=None, secret_file=str(tmp_path / "secret"))},
        "callers": {"c": {**CALLER, "apps": ["env"], "token_env": "T"}},
    }
    lines = kept_from_the_start(from_mapping(document, {"S": "s", "T": TOKEN}))
    assert lines == [
        "apps.env.secret_env: a running gateway keeps the value S had when it started (a "
        "reload cannot see a changed environment); to rotate this secret, use secret_file, "
        "which is watched and taken without a restart, or restart the gateway",
        "callers.c.token_env: a running gateway keeps the value T had when it started (a "
        "reload cannot see a changed environment); to rotate this token, use token_file, "
        "which is watched and taken without a restart, or restart the gateway",
    ]


def test_an_inline_secret_is_warned_of_once_per_process_and_app(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credentials, "INLINE_WARNED", set())
    document = {
        "apps": {
            "a": app(secret_env=None, secret="x"),
            "b": app(secret_env=None, secret="y"),
            "demo": app(secret_env=None, secret="demo-secret"),
        }
    }
    with caplog.at_level(logging.WARNING, "neu_gateway.config"):
        for _ in range(3):  # a command's several loads, or a reload after another
            from_mapping(document, {})
    assert caplog.messages == [
        "apps.a.secret: the secret is written in the config file; outside the sandbox demo use "
        "secret_file (or secret_env)",
        "apps.b.secret: the secret is written in the config file; outside the sandbox demo use "
        "secret_file (or secret_env)",
    ]
