from __future__ import annotations

from collections.abc import Iterator

import pytest
from security_kit import Pki, TlsServer, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[TlsServer]:
    server = TlsServer(pki)
    yield server
    server.close()
