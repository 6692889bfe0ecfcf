"""The gateway.yaml `neu-gateway init` writes: valid as written, and with its comments taken up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli.starter import FILES, STARTER_CONFIG
from gateway.config import placeholders
from gateway.config.errors import ConfigError
from gateway.config.load import from_mapping, load
from gateway.core.secrets import DEMO_SIGNING_SECRET
from tests.cli.support import run
from tests.support.config_text import uncommented


def written_files(text: str, directory: Path) -> str:
    """The starter with each file it names made, under `directory`."""
    for name, _ in FILES:
        made = directory / Path(name).name
        made.write_text("t" * 32 + "\n")
        text = text.replace(name, str(made))
    return text


@pytest.mark.parametrize(
    "uncomment",
    [(), ("callbacks",), ("cache",), ("callbacks", "cache", "trusted_networks", "secret_env")],
    ids=["as written", "callbacks on", "redis", "every commented option"],
)
def test_the_starter_config_is_valid_as_written_and_uncommented(
    tmp_path: Path, uncomment: tuple[str, ...]
) -> None:
    text = STARTER_CONFIG
    for key in uncomment:
        text = uncommented(text, key)
    if "secret_env" in uncomment:
        text = text.replace("    secret_file: /run/secrets/myapp\n", "")
    signing = tmp_path / "myapp-signing"
    signing.write_text(DEMO_SIGNING_SECRET + "\n")
    text = text.replace("/run/secrets/myapp-signing", str(signing))
    path = tmp_path / "gateway.yaml"
    path.write_text(written_files(text, tmp_path))
    config = load(path, environ={"NEU_SECRET_MYAPP": "the-app-secret", "REDIS_PASSWORD": "pw"})
    assert bool(config.apps["myapp"].signing_secrets) is ("callbacks" in uncomment)
    assert config.apps["myapp"].upstream.startswith("https://")
    assert (config.callbacks.listen is not None) is ("callbacks" in uncomment)
    assert config.cache.backend == ("redis" if "cache" in uncomment else "memory")


def test_the_starter_config_names_exactly_the_files_init_lists(tmp_path: Path) -> None:
    document = yaml.safe_load(STARTER_CONFIG.replace("/run/secrets", str(tmp_path)))
    with pytest.raises(ConfigError) as caught:
        from_mapping(document, {})
    assert caught.value.problems == [
        f"{key}: cannot read {tmp_path / Path(name).name} (No such file or directory)"
        for key, (name, _) in zip(
            ["apps.myapp.secret_file", "callers.orders.token_file"], FILES, strict=True
        )
    ]


def test_the_starter_reads_its_secrets_from_files_not_the_environment() -> None:
    """A file is watched; a running process never sees its environment change."""
    document = yaml.safe_load(STARTER_CONFIG)
    assert document["apps"]["myapp"]["secret_file"] == FILES[0][0]
    assert document["callers"]["orders"]["token_file"] == FILES[1][0]
    assert "secret_env" not in document["apps"]["myapp"]
    assert "token_env" not in document["callers"]["orders"]


def test_init_says_which_files_to_create_and_how_to_protect_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(capsys, "init", str(tmp_path))
    assert ran.status == 0
    lines = ran.stdout.splitlines()
    step = lines.index(
        "  2. create the files it reads, each holding one value, readable by the gateway only"
    )
    assert lines[step + 1] == "     (mode 0600: umask 077 before writing, or chmod 600 after):"
    listed = [line.split()[0] for line in lines[step + 2 : step + 2 + len(FILES)]]
    assert listed == [name for name, _ in FILES]
    assert "environment variable" not in ran.stdout


def test_the_starter_config_holds_each_placeholder_check_config_refuses() -> None:
    app = yaml.safe_load(STARTER_CONFIG)["apps"]["myapp"]
    assert (app["appid"], app["upstream"]) == (placeholders.APPID, placeholders.UPSTREAM)
    assert "${REDIS_PASSWORD}" in STARTER_CONFIG, "a variable of the text is kept as written"
