"""A real registry process per test module, on the session broker, under its own topic prefix.

Each module gets its own ``<prefix>_schemas`` topic, so a test that kills and restarts its registry cannot disturb
another module's state, and none of them touches the session stack's registry.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from registry_helpers import RegistryProcess, registry_env

from onceonly.testing import StackInfo


@pytest.fixture(scope="module")
def registry(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """This module's own registry, its state in ``<unique prefix>_schemas`` on the session broker."""
    state = tmp_path_factory.mktemp("registry")
    proc = RegistryProcess(registry_env(stack, f"r{uuid.uuid4().hex[:8]}.", state), state / "registry.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def http(registry: RegistryProcess) -> Iterator[httpx.Client]:
    with registry.client() as client:
        yield client


@pytest.fixture
def subject() -> str:
    """A subject no other test uses."""
    return f"s{uuid.uuid4().hex[:10]}-value"
