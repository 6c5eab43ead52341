"""Operator fixtures: a namespace with the catalog's topics a whole module can share, and Redis keys cleaned up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from onceonly.settings import Settings
from onceonly.testing import StackInfo, stack_namespace


def _forget(settings: Settings) -> None:
    """Remove the namespace's Redis keys (receipts, traces, locks): the machine's Redis is shared."""
    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url)
        keys = list(client.scan_iter(f"{settings.topic_prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="module")
def module_topics(stack: StackInfo) -> Iterator[Settings]:
    """Like ``topics``, for a module whose tests share one scenario."""
    from onceonly.topics import apply_topics

    settings = stack_namespace(stack)
    apply_topics(settings)
    yield settings
    _forget(settings)


@pytest.fixture
def clean_redis(settings: Settings) -> Iterator[None]:
    yield
    _forget(settings)
