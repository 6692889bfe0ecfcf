"""The TLS contexts an app's files make, and the errors that name the option at fault."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.upstream.tls import TlsSetupError, default_context, own_context
from tests.support.pki import Pki
from tests.upstream.helpers import app_for

URL = "https://platform.test"


def test_an_app_without_tls_files_uses_the_shared_default() -> None:
    assert own_context(app_for(URL)) is None
    assert default_context() is default_context()


def test_a_private_ca_is_trusted_alone_or_beside_the_systems(pki: Pki) -> None:
    only = own_context(app_for(URL, tls={"ca_file": str(pki.ca), "ca_mode": "only"}))
    assert only is not None
    [ca] = only.get_ca_certs()
    assert ca["subject"] == ((("commonName", "ca"),),)
    added = own_context(app_for(URL, tls={"ca_file": str(pki.ca)}))
    assert added is not None
    assert ca in added.get_ca_certs()


def test_a_client_certificate_is_offered(pki: Pki) -> None:
    tls = {"client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    assert own_context(app_for(URL, tls=tls)) is not None


def test_a_ca_file_that_is_no_certificate_names_the_option(tmp_path: Path) -> None:
    broken = tmp_path / "ca.pem"
    broken.write_text("not a certificate")
    message = f"apps.demo.tls.ca_file: cannot use {broken}"
    with pytest.raises(TlsSetupError, match=re.escape(message)):
        own_context(app_for(URL, tls={"ca_file": str(broken)}))


def test_a_key_that_does_not_fit_its_certificate_names_both(pki: Pki) -> None:
    tls = {"client_cert": str(pki.client_cert), "client_key": str(pki.server_key)}
    message = f"apps.demo.tls.client_cert: cannot use {pki.client_cert} with {pki.server_key}"
    with pytest.raises(TlsSetupError, match=re.escape(message)):
        own_context(app_for(URL, tls=tls))
