from __future__ import annotations

import pytest

from tests.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA of the test's own, a server certificate for platform.test and 127.0.0.1, a client
    certificate, and an unrelated CA."""
    return make_pki(tmp_path_factory.mktemp("pki"))
