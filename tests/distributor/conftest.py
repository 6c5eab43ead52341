"""Distributor fixtures: a namespace with the catalog's topics that a whole module's scenario can share."""

from __future__ import annotations

import pytest

from onceonly.settings import Settings
from onceonly.testing import StackInfo, stack_namespace


@pytest.fixture(scope="module")
def module_topics(stack: StackInfo) -> Settings:
    """Like ``topics``, for one scenario shared by the tests of a module (one distributor run, many assertions)."""
    from onceonly.topics import apply_topics

    settings = stack_namespace(stack)
    apply_topics(settings)
    return settings
