"""`neu-gateway openapi`: the description /openapi.json serves, to generate clients from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.contract.openapi import Facts, build_document
from tests.cli.support import run


def test_without_a_config_it_prints_what_a_gateway_with_the_defaults_checks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ran = run(capsys, "openapi")
    assert (ran.status, ran.stderr) == (0, "")
    assert json.loads(ran.stdout) == build_document(Facts())
    assert json.loads(ran.stdout)["servers"][0]["url"] == "http://127.0.0.1:8080"


def test_server_names_where_the_clients_will_call(capsys: pytest.CaptureFixture[str]) -> None:
    ran = run(capsys, "openapi", "--server", "https://gateway.internal")
    assert json.loads(ran.stdout)["servers"][0]["url"] == "https://gateway.internal"


def test_with_a_config_it_describes_that_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_SECRET", "shop-secret")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "listen: {host: 127.0.0.1, port: 9090}\n"
        "apps:\n"
        "  shop: {appid: shop-appid, secret_env: SHOP_SECRET, upstream: sandbox}\n"
        "limits: {max_value_length: 512}\n"
    )
    document = json.loads(run(capsys, "openapi", "-c", str(config)).stdout)
    assert document["servers"][0]["url"] == "http://127.0.0.1:9090"
    assert document["components"]["parameters"]["App"]["schema"]["enum"] == ["shop"]
    body = document["paths"]["/neuopenapi/pay/transactions/tradeclose"]["post"]["requestBody"]
    form = body["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form["properties"]["tradeNo"]["maxLength"] == 512


def test_a_config_that_does_not_load_is_reported_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = run(capsys, "openapi", "-c", str(tmp_path / "missing.yaml"))
    assert ran.status == 2
    assert ran.stdout == ""
    assert "no config file" in ran.stderr


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    # `neu-gateway openapi | head`: the document is far larger than a pipe's buffer.
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "openapi"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.read(1) == b"{"
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)
    assert stderr == b""
    assert process.returncode == 141
