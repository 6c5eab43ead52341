"""pytest fixtures for onceonly and for departments testing their adapters against it.

The session broker is ``ONCEONLY_BOOTSTRAP_SERVERS`` when set (a real cluster); else testcontainers
(Kafka, Redis) when a Docker engine answers; else the embedded stack on free ports. PostgreSQL is
``ONCEONLY_TEST_POSTGRES_URL``, else the machine's, else a container (``postgres_url``). Every test gets its
own topic prefix (and Redis key prefix), so tests never see each other's data.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from onceonly.settings import Settings
from onceonly.stack import EmbeddedStack, StackOptions
from onceonly.stack.components import redis_ready
from onceonly.stack.process import free_port, port_open

MACHINE_REDIS = "redis://127.0.0.1:6379/0"
MACHINE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MACHINE_MYSQL = "mysql+pymysql://root@127.0.0.1:3306/test"


@dataclass
class StackInfo:
    bootstrap_servers: str
    registry_url: str
    redis_url: str
    broker_quirks: Literal["none", "tansu"]
    embedded: EmbeddedStack | None = None


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def _embedded_stack() -> Iterator[StackInfo]:
    state = Path(tempfile.mkdtemp(prefix="onceonly-test-stack-"))
    stack = EmbeddedStack(state)
    redis_url = MACHINE_REDIS if redis_ready(MACHINE_REDIS) else None
    if redis_url:
        os.environ.setdefault("ONCEONLY_REDIS_URL", redis_url)
    env, _ = stack.up(StackOptions(broker_port=free_port(), registry_port=free_port()))
    try:
        yield StackInfo(
            env["ONCEONLY_BOOTSTRAP_SERVERS"], env["ONCEONLY_REGISTRY_URL"], env["ONCEONLY_REDIS_URL"], "tansu", stack
        )
    finally:
        stack.down()


def _containers() -> Iterator[StackInfo]:
    from testcontainers.community.kafka import RedpandaContainer
    from testcontainers.redis import RedisContainer

    with RedpandaContainer() as rp, RedisContainer() as rd:
        host, port = rd.get_container_host_ip(), rd.get_exposed_port(6379)
        yield StackInfo(rp.get_bootstrap_server(), rp.get_schema_registry_address(), f"redis://{host}:{port}/0", "none")


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    """The session's Kafka, registry and Redis."""
    if os.environ.get("ONCEONLY_BOOTSTRAP_SERVERS"):
        yield StackInfo(
            os.environ["ONCEONLY_BOOTSTRAP_SERVERS"],
            os.environ.get("ONCEONLY_REGISTRY_URL", "http://127.0.0.1:8081"),
            os.environ.get("ONCEONLY_REDIS_URL", MACHINE_REDIS),
            "tansu" if os.environ.get("ONCEONLY_BROKER_QUIRKS") == "tansu" else "none",
        )
    elif os.environ.get("ONCEONLY_TEST_CONTAINERS") == "1" or (
        os.environ.get("ONCEONLY_TEST_CONTAINERS") != "0" and docker_available()
    ):
        if not docker_available():
            pytest.fail("ONCEONLY_TEST_CONTAINERS=1 but no Docker engine answers")
        yield from _containers()
    else:
        yield from _embedded_stack()


@pytest.fixture
def namespace() -> str:
    """A prefix unique to this test for topics and Redis keys."""
    return f"t{uuid.uuid4().hex[:10]}."


@functools.cache
def _test_state_dir() -> Path:
    """One scratch state directory per test process, removed at exit: what services keep beside themselves
    (an http sink's default watermark store) never lands in the checkout's ``.onceonly``, a developer's own."""
    path = Path(tempfile.mkdtemp(prefix="onceonly-test-state-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def stack_namespace(stack: StackInfo, namespace: str | None = None) -> Settings:
    """Settings pointing at the session stack under ``namespace`` (a fresh one when not given): for fixtures wider
    than one test (a module's shared scenario, one demo run)."""
    return Settings(
        bootstrap_servers=stack.bootstrap_servers,
        registry_url=stack.registry_url,
        redis_url=stack.redis_url,
        broker_quirks=stack.broker_quirks,
        topic_prefix=namespace or f"t{uuid.uuid4().hex[:10]}.",
        profile="dev",
        state_dir=_test_state_dir(),
    )


@pytest.fixture
def settings(stack: StackInfo, namespace: str) -> Settings:
    """Settings pointing at the session stack, isolated under this test's namespace."""
    return stack_namespace(stack, namespace)


@pytest.fixture
def topics(settings: Settings) -> Settings:
    """``settings`` with every catalog topic created under the test's namespace."""
    from onceonly.topics import apply_topics

    apply_topics(settings)
    return settings


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server the tests may create databases on: ``ONCEONLY_TEST_POSTGRES_URL`` when set, else the
    machine's at 127.0.0.1:5432 when it answers, else a testcontainers one when a Docker engine answers; skipped
    outside CI when there is none (CI must have one)."""
    yield from _database_server("PostgreSQL", "ONCEONLY_TEST_POSTGRES_URL", MACHINE_POSTGRES, 5432, _postgres_container)


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A MySQL/MariaDB server the tests may create databases on (the ``mysql`` extra's driver): found as
    ``postgres_url`` finds PostgreSQL, from ``ONCEONLY_TEST_MYSQL_URL``, the machine's at 127.0.0.1:3306 (user root,
    no password), or a container."""
    yield from _database_server("MySQL/MariaDB", "ONCEONLY_TEST_MYSQL_URL", MACHINE_MYSQL, 3306, _mysql_container)


def _database_server(
    what: str, variable: str, machine: str, port: int, container: Callable[[], Iterator[str]]
) -> Iterator[str]:
    if url := os.environ.get(variable):
        yield url
    elif port_open("127.0.0.1", port):
        yield machine
    elif os.environ.get("ONCEONLY_TEST_CONTAINERS") != "0" and docker_available():
        yield from container()
    elif os.environ.get("CI"):
        pytest.fail(f"no {what}: none on 127.0.0.1:{port}, no {variable}, no Docker (CI must start one)")
    else:
        pytest.skip(f"no {what} on 127.0.0.1:{port} (set {variable}, or start Docker)")


def _postgres_container() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver="psycopg") as pg:
        yield pg.get_connection_url()


def _mysql_container() -> Iterator[str]:
    from testcontainers.community.mysql import MySqlContainer

    with MySqlContainer("mariadb:10.11", dialect="pymysql") as db:
        yield db.get_connection_url()


@pytest.fixture
def postgres_db(postgres_url: str, namespace: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    import sqlalchemy as sa

    name = "oo_" + namespace.strip(".")
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for an ``onceonly`` process (or CLI run) that must see this test's stack and namespace."""
    return {
        **os.environ,
        "ONCEONLY_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "ONCEONLY_REGISTRY_URL": settings.registry_url,
        "ONCEONLY_TOPIC_PREFIX": settings.topic_prefix,
        "ONCEONLY_BROKER_QUIRKS": settings.broker_quirks,
        "ONCEONLY_PROFILE": settings.profile,
        **extra,
    }


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def prometheus_samples(text: str) -> Samples:
    """A /metrics page as ``(name, labels) -> value``, to assert on one series by its exact labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """One series' value, or None when the page does not have it."""
    return samples.get((name, frozenset(labels.items())))
