"""Distributor fixtures: a namespace with the catalog's topics that a whole module's scenario can share."""

from __future__ import annotations

import uuid

import pytest

from onceonly.settings import Settings
from onceonly.testing import StackInfo


@pytest.fixture(scope="module")
def module_topics(stack: StackInfo) -> Settings:
    """Like ``topics``, for one scenario shared by the tests of a module (one distributor run, many assertions)."""
    from onceonly.topics import apply_topics

    settings = Settings(
        bootstrap_servers=stack.bootstrap_servers,
        registry_url=stack.registry_url,
        redis_url=stack.redis_url,
        broker_quirks=stack.broker_quirks,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        profile="dev",
    )
    apply_topics(settings)
    return settings
