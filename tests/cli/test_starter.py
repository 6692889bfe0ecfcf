"""The gateway.yaml `neu-gateway init` writes: valid as written, and with its comments taken up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli.starter import ENVIRONMENT, STARTER_CONFIG
from gateway.config import placeholders
from gateway.config.errors import ConfigError
from gateway.config.load import from_mapping, load
from tests.support.config_text import uncommented

STARTER_ENV = {name: "t" * 32 for name, _ in ENVIRONMENT}


@pytest.mark.parametrize(
    "uncomment",
    [(), ("callbacks",), ("cache",), ("callbacks", "cache", "trusted_networks", "secret_file")],
    ids=["as written", "callbacks on", "redis", "every commented option"],
)
def test_the_starter_config_is_valid_as_written_and_uncommented(
    tmp_path: Path, uncomment: tuple[str, ...]
) -> None:
    text = STARTER_CONFIG
    for key in uncomment:
        text = uncommented(text, key)
    if "secret_file" in uncomment:
        text = text.replace("    secret_env: NEU_SECRET_MYAPP\n", "")
        text = text.replace("/run/secrets/myapp", str(tmp_path / "secret"))
        (tmp_path / "secret").write_text("the-app-secret\n")
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    config = load(path, environ={**STARTER_ENV, "REDIS_PASSWORD": "pw"})
    assert config.apps["myapp"].upstream.startswith("https://")
    assert (config.callbacks.listen is not None) is ("callbacks" in uncomment)
    assert config.cache.backend == ("redis" if "cache" in uncomment else "memory")


def test_the_starter_config_names_exactly_the_variables_init_lists() -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping(yaml.safe_load(STARTER_CONFIG), {})
    named = [problem.rpartition("environment variable ")[2] for problem in caught.value.problems]
    assert named == [f"{name} is not set" for name, _ in ENVIRONMENT]


def test_the_starter_config_holds_each_placeholder_check_config_refuses() -> None:
    app = yaml.safe_load(STARTER_CONFIG)["apps"]["myapp"]
    assert (app["appid"], app["upstream"]) == (placeholders.APPID, placeholders.UPSTREAM)
    assert "${REDIS_PASSWORD}" in STARTER_CONFIG, "a variable of the text is kept as written"
