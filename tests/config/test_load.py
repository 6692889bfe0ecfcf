from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import credentials
from gateway.config.credentials import read_credential
from gateway.config.errors import ConfigError
from gateway.config.load import from_mapping, load
from gateway.core.secrets import DEMO_SIGNING_SECRET, Secret
from tests.config.documents import app, problems_of

REPO = Path(__file__).resolve().parents[2]


def only_problem(directory: Path, text: str) -> tuple[Path, str]:
    """`text` as a gateway.yaml that load() refuses, and its one problem."""
    path = directory / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    [problem] = caught.value.problems
    return path, problem


def test_the_repository_config_is_valid(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Warned of once a process: as if this were the first load.
    monkeypatch.setattr(credentials, "INLINE_WARNED", set())
    config = load(REPO / "gateway.yaml", environ={})
    assert config.apps["demo"].appid == "demo-appid"
    assert config.sandbox.listen.port == 8090
    # The public demo secret, written in the file on purpose: nothing to warn of.
    assert "the secret is written in the config file" not in caplog.text


def test_the_repository_config_moves_the_sandbox_with_neu_sandbox_port() -> None:
    config = load(REPO / "gateway.yaml", environ={"NEU_SANDBOX_PORT": "18090"})
    assert config.sandbox.listen.port == 18090


def test_the_repository_config_delivers_signed_to_the_sandbox_standing_in_for_the_service() -> None:
    config = load(REPO / "gateway.yaml", environ={"NEU_CALLBACKS_PORT": "18081"})
    assert config.callbacks.listen is not None
    assert config.callbacks.listen.port == 18081
    demo = config.apps["demo"]
    assert demo.callbacks.deliver_to == "http://127.0.0.1:8090/sandbox/deliveries"
    assert [secret.reveal() for secret in demo.signing_secrets] == [DEMO_SIGNING_SECRET]


def test_variables_are_substituted_with_defaults() -> None:
    document = {"apps": {"demo": app(upstream="${HOST:-http://127.0.0.1:9}/base", appid="${ID}")}}
    config = from_mapping(document, {"S": "s", "ID": "app-7"})
    assert config.apps["demo"].upstream == "http://127.0.0.1:9/base"
    assert config.apps["demo"].appid == "app-7"


def test_secret_file_is_read_and_trimmed(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    config = from_mapping(
        {"apps": {"demo": app(secret_env=None, secret_file=str(secret_file))}}, {}
    )
    assert config.apps["demo"].secret.reveal() == "from-file"


def test_secret_never_prints_itself() -> None:
    secret = Secret("s3cr3t")
    assert "s3cr3t" not in repr(secret)
    assert "s3cr3t" not in str(secret)
    config = from_mapping({"apps": {"demo": app()}}, {"S": "s3cr3t"})
    assert "s3cr3t" not in repr(config)


def test_errors_never_echo_a_secret() -> None:
    problems = problems_of({"apps": {"demo": app(secret=12345, secret_env=None)}})
    assert "12345" not in "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("apps: [", "not valid YAML at line", id="broken YAML"),
        pytest.param("- just a list", "(top level): must be a mapping", id="not a mapping"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load(path, environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "apps:\n  demo: {appid: a, secret: s, upstream: sandbox}\n"
            "listen: {port: 0}\n"
            "apps:\n  demo: {callbacks: {verify_sign: true}}\n",
            "line 4: key 'apps' is given twice in one mapping (first at line 1)",
            id="a second apps block",
        ),
        pytest.param(
            "apps:\n  demo:\n    appid: a\n    secret: s\n    upstream: sandbox\n    appid: b\n",
            "line 6: key 'appid' is given twice in one mapping (first at line 3)",
            id="nested",
        ),
        pytest.param(
            "apps: {demo: {appid: a, secret: s, upstream: sandbox}}\n"
            "limits: {max_params: 1, max_params: 2}\n",
            "line 2: key 'max_params' is given twice",
            id="in a flow mapping",
        ),
    ],
)
def test_a_key_given_twice_is_refused_with_its_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path, problem = only_problem(tmp_path, text)
    assert problem.startswith(f"{path}: {expected}")
    assert problem.endswith("YAML would keep only the last, so merge them into one")


def test_merge_keys_may_still_override_what_they_merge(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "apps:\n"
        "  one: &app {appid: a, secret: s, upstream: sandbox}\n"
        "  two:\n"
        "    <<: *app\n"
        "    appid: b\n"
        "default_app: one\n"
    )
    assert load(path, environ={}).apps["two"].appid == "b"


def test_aliases_that_repeat_into_millions_of_values_are_refused_before_they_expand(
    tmp_path: Path,
) -> None:
    # Each line names the one before nine times: 9**8 (43 million) strings once expanded.
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 8)]
    path = tmp_path / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    [problem] = caught.value.problems
    assert problem.startswith("(top level): more than 100000 values")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load(tmp_path / "absent.yaml", environ={})


def _loaded(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return load(path, environ={})


def _load_problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _loaded(tmp_path, text)
    return caught.value.problems


DEMO_APP_YAML = "apps:\n  demo:\n    appid: a\n    secret: s\n    upstream: sandbox\n"


@pytest.mark.parametrize(
    ("written", "validation"),
    [
        pytest.param("off", "off", id="off unquoted, as the docs write it"),
        pytest.param("Off", "off", id="Off unquoted"),
        pytest.param("no", "off", id="no unquoted"),
        pytest.param("false", "off", id="false"),
        pytest.param('"off"', "off", id="off quoted"),
        pytest.param("on", "doc", id="on unquoted"),
        pytest.param("true", "doc", id="true"),
        pytest.param("doc", "doc", id="doc"),
    ],
)
def test_validation_reads_yamls_booleans_as_meant(
    tmp_path: Path, written: str, validation: str
) -> None:
    config = _loaded(tmp_path, DEMO_APP_YAML + f"    validation: {written}\n")
    assert config.apps["demo"].validation == validation


@pytest.mark.parametrize(
    ("text", "field", "word"),
    [
        pytest.param("    tls: {ca_mode: on}\n", "apps.demo.tls.ca_mode", "true", id="ca_mode"),
        pytest.param("    proxy: off\n", "apps.demo.proxy", "false", id="an app's proxy"),
        pytest.param("proxy: no\n", "proxy", "false", id="proxy"),
        pytest.param("cache: {backend: yes}\n", "cache.backend", "true", id="cache.backend"),
        pytest.param("logging: {format: off}\n", "logging.format", "false", id="logging.format"),
        pytest.param("callbacks: {store: on}\n", "callbacks.store", "true", id="callbacks.store"),
    ],
)
def test_a_word_yaml_reads_as_a_boolean_is_named_as_such(
    tmp_path: Path, text: str, field: str, word: str
) -> None:
    [problem] = _load_problems(tmp_path, DEMO_APP_YAML + text)
    assert problem.startswith(f"{field}: "), problem
    assert problem.endswith(
        f"(YAML reads an unquoted yes, no, on, off, true or false as the boolean {word}; "
        "put the value in quotes)"
    ), problem


@pytest.mark.parametrize("written", ['"Off"', "strict", "0", "[off]"])
def test_a_validation_neither_doc_nor_off_is_named_with_the_allowed_values(
    tmp_path: Path, written: str
) -> None:
    [problem] = _load_problems(tmp_path, DEMO_APP_YAML + f"    validation: {written}\n")
    assert problem == (
        "apps.demo.validation: must be doc (the doc's lists of values are checked) or off "
        "(only required parameters)"
    )


def test_a_credential_given_no_way_at_all_is_a_problem_not_a_crash() -> None:
    problems: list[str] = []
    assert read_credential("apps.demo", "secret", None, None, None, {}, problems) is None
    assert problems == ["apps.demo: one of secret_env, secret_file or secret is required"]


SECRET_ON_A_BROKEN_LINE = "apps: {demo: {appid: a, secret: do-not-echo-me upstream: sandbox}}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            SECRET_ON_A_BROKEN_LINE,
            "not valid YAML at line 1, column 56: expected ',' or '}', but got ':' "
            "(while parsing a flow mapping from line 1, column 14)",
            id="a missing comma in a flow mapping",
        ),
        pytest.param(
            "apps:\n  demo:\n    appid: a\n    secret: 'do-not-echo-me\n",
            "not valid YAML at line 5, column 1: found unexpected end of stream "
            "(while scanning a quoted scalar from line 4, column 13)",
            id="an unclosed quote",
        ),
        pytest.param(
            "apps:\n  demo: {appid: a}\n\tsecret: do-not-echo-me\n",
            "not valid YAML at line 3, column 1: found character '\\t' that cannot start any "
            "token (while scanning for the next token)",
            id="a tab",
        ),
    ],
)
def test_a_yaml_error_keeps_pyyamls_reason_but_never_the_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path, problem = only_problem(tmp_path, text)
    assert problem == f"{path}: {expected}"
    assert "do-not-echo-me" not in problem


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(
            {"apps": {"demo": app()}, "timeout": {"total_s": 5}},
            "timeout: unknown option; did you mean `timeouts`?",
            id="top level",
        ),
        pytest.param(
            {"apps": {"demo": app(upstrem="https://x.example")}},
            "apps.demo.upstrem: unknown option; did you mean `upstream`?",
            id="inside a mapping of apps",
        ),
        pytest.param(
            {"apps": {"demo": app(tls={"ca_fle": "/x"})}},
            "apps.demo.tls.ca_fle: unknown option; did you mean `ca_file`?",
            id="inside an optional section",
        ),
        pytest.param(
            {"apps": {"demo": app()}, "callbacks": {"listen": {"hots": "127.0.0.1"}}},
            "callbacks.listen.hots: unknown option; did you mean `host`?",
            id="in a subclass of a section",
        ),
        pytest.param(
            {"apps": {"demo": app()}, "limits": {"zzz": 1}},
            "limits.zzz: unknown option (check the spelling against the configuration reference, "
            "docs/configuration.md)",
            id="nothing close",
        ),
    ],
)
def test_an_unknown_key_gets_the_closest_allowed_one_of_its_section(
    document: dict[str, Any], expected: str
) -> None:
    assert expected in problems_of(document)
