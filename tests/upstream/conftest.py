from __future__ import annotations

import pytest

from tests.support.pki import Pki, make_pki


@pytest.fixture(scope="package")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The test CA and certificates, made once for the platform client's tests: openssl
    takes seconds, and three modules here use them."""
    return make_pki(tmp_path_factory.mktemp("pki"))
