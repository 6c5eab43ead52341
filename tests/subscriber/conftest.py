"""Subscriber fixtures: real broker topics, a department store that counts its applies, workers in threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from subscriber_kit import Broker, make_store

from onceonly.settings import Settings
from services.subscriber import Codec


@pytest.fixture
def sqlite_store(tmp_path: Path) -> str:
    return make_store(f"sqlite:///{tmp_path / 'gjj.db'}")


@pytest.fixture
def postgresql_store(postgres_db: str) -> str:
    return make_store(postgres_db)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> str:
    """The department's database, on SQLite and on PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_store"))


@pytest.fixture(params=["faust", "loop"])
def engine(request: pytest.FixtureRequest) -> str:
    """Both hosts of a subscriber (a faust-streaming agent, a confluent-kafka loop): the same guarantees."""
    return str(request.param)


@pytest.fixture
def codec(settings: Settings) -> Codec:
    from onceonly.standard import RegistryClient, Serde

    result: Codec = Serde(RegistryClient(settings.registry_url))
    return result


@pytest.fixture
def broker(topics: Settings, codec: Codec) -> Broker:
    return Broker(topics, codec)


@pytest.fixture
def redis_keys(settings: Settings) -> Iterator[None]:
    """Remove this test's Redis keys afterwards (the machine's Redis is shared)."""
    yield
    import redis

    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url)
        keys = list(client.scan_iter(f"{settings.topic_prefix}*"))
        if keys:
            client.delete(*keys)
