"""The resolved config: what it hands out for redaction, which apps use the sandbox."""

from __future__ import annotations

import pytest

from gateway.config.load import from_mapping
from gateway.config.model import App, Config
from gateway.core.secrets import Secret
from tests.config.documents import app

ENVIRON = {"S": "app-secret-value", "T": "caller-token-0123456789"}


def test_every_credential_is_handed_out_for_redaction() -> None:
    document = {
        "apps": {
            "demo": app(proxy="http://user:proxy-pass@proxy.example:3128"),
            "box": app(upstream="sandbox"),
        },
        "callers": {"orders": {"token_env": "T", "apps": ["demo"], "allow": ["* /neuopenapi/*"]}},
    }
    config = from_mapping(document, ENVIRON)
    assert sorted(config.credentials()) == sorted(
        ["app-secret-value", "app-secret-value", "caller-token-0123456789", "proxy-pass"]
    )


def test_the_sandbox_apps_are_those_whose_upstream_is_the_sandbox() -> None:
    document = {"apps": {"demo": app(), "box": app(upstream="sandbox")}, "default_app": "demo"}
    config = from_mapping(document, ENVIRON)
    assert [entry.name for entry in config.sandbox_apps] == ["box"]
    assert config.apps["box"].uses_sandbox
    assert not config.apps["demo"].uses_sandbox


def test_the_resolved_config_is_built_by_keyword_only() -> None:
    with pytest.raises(TypeError):
        App("demo", "appid", Secret("s"), "sandbox")  # type: ignore[misc]
    config = from_mapping({"apps": {"demo": app()}}, ENVIRON)
    with pytest.raises(TypeError):
        Config(config.listen, config.apps, None, config.timeouts, config.limits)  # type: ignore[misc]
