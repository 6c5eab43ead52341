"""A store or the schema registry that goes away and comes back: nothing lost, nothing applied twice, nothing
dead-lettered for it, and the worker stays up and in its group."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import pytest
from sqlalchemy.engine import make_url
from subscriber_kit import (
    Broker,
    TcpProxy,
    person_change,
    query,
    running,
    subscriber_config,
    table,
    wait_until,
)

from onceonly.standard import RegistryClient, Serde

PEOPLE = 100


def changes(versions: range) -> list[dict[str, Any]]:
    return [person_change(f"P{p:03d}", v, "c" if v == 1 else "u") for v in versions for p in range(PEOPLE)]


def test_postgresql_refusing_connections_pauses_and_then_catches_up(
    postgresql_store: str, broker: Broker, engine: str
) -> None:
    real = make_url(postgresql_store)
    proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
    via_proxy = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    config = subscriber_config(via_proxy, batch_size=50, retry_backoff_max=0.5, engine=engine)

    def applied() -> int:
        return int(query(postgresql_store, "SELECT count(*) FROM apply_log")[0][0])

    try:
        with running(config, broker.settings, broker.codec) as worker:
            broker.publish(changes(range(1, 3)))
            wait_until(lambda: applied() >= 2 * PEOPLE, 30, "the first two versions")
            proxy.down()
            broker.publish(changes(range(3, 6)))
            wait_until(lambda: worker.stats["retries"] >= 3, 20, "retries while the database is down")
            assert applied() == 2 * PEOPLE, "nothing can be applied while the database is down"
            proxy.up()
            wait_until(lambda: applied() >= 5 * PEOPLE, 30, "catching up once the database is back")
            wait_until(lambda: broker.committed() == 5 * PEOPLE, 20, "offsets committed")
    finally:
        proxy.down()
    assert table(postgresql_store) == [
        (f"P{p:03d}", "name v5", "address v5", None, "normal", 5, False, None) for p in range(PEOPLE)
    ]
    twice = query(postgresql_store, "SELECT sjid FROM apply_log GROUP BY sjid HAVING count(*) > 1")
    assert twice == [] and applied() == 5 * PEOPLE
    assert worker.stats["applied"] == 5 * PEOPLE
    assert worker.assignments == 1, "the paused worker left its group"


def test_a_registry_that_is_down_pauses_the_worker_instead_of_dead_lettering(sqlite_store: str, broker: Broker) -> None:
    registry = urlparse(broker.settings.registry_url)
    proxy = TcpProxy((registry.hostname or "127.0.0.1", registry.port or 8081))
    codec = Serde(RegistryClient(f"http://127.0.0.1:{proxy.port}", timeout=2.0))
    proxy.down()  # before the worker has looked up a single schema
    try:
        with running(subscriber_config(sqlite_store, retry_backoff_max=0.5), broker.settings, codec) as worker:
            broker.publish(changes(range(1, 2)))
            wait_until(lambda: worker.stats["retries"] >= 3, 30, "retries while the registry is down")
            assert broker.committed() == 0
            proxy.up()
            wait_until(lambda: worker.stats["applied"] == PEOPLE, 30, "every change once the registry is back")
            wait_until(lambda: broker.committed() == PEOPLE, 20, "offsets committed")
    finally:
        proxy.down()
    assert worker.stats["dead_lettered"] == 0, "a registry outage is not the record's fault"
    assert table(sqlite_store) == [
        (f"P{p:03d}", "name v1", "address v1", None, "normal", 1, False, None) for p in range(PEOPLE)
    ]


class _FlakyApi:
    """A department API answering 503 for a while; it stores by key and counts what it applied per event."""

    def __init__(self) -> None:
        self.down_until = 0.0
        self.applied: Counter[str] = Counter()
        self.store: dict[str, int] = {}
        self.answered_503 = 0
        self.lock = threading.Lock()

    def post(self, key: str, body: dict[str, Any]) -> int:
        with self.lock:
            if time.monotonic() < self.down_until:
                self.answered_503 += 1
                return 503
            if self.applied[key]:
                return 200
            if self.store.get(body["entity_key"], 0) >= body["authority_version"]:
                return 409
            self.applied[key] += 1
            self.store[body["entity_key"]] = body["authority_version"]
            return 201


@pytest.fixture
def flaky_api() -> Iterator[tuple[_FlakyApi, str]]:
    api = _FlakyApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(api.post(self.headers["Idempotency-Key"], body))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield api, f"http://127.0.0.1:{server.server_port}/changes"
    server.shutdown()
    server.server_close()


def test_http_sink_answering_503_for_a_while_loses_nothing(broker: Broker, flaky_api: tuple[_FlakyApi, str]) -> None:
    api, url = flaky_api
    sink = {"kind": "http", "url": url, "retries": 1, "backoff": 0.05, "timeout": 2.0}
    config = subscriber_config("sqlite://", sink=sink, batch_size=40, retry_backoff_max=0.5)
    with running(config, broker.settings, broker.codec) as worker:
        broker.publish(changes(range(1, 2)))
        wait_until(lambda: len(api.applied) >= PEOPLE, 30, "the first version")
        api.down_until = time.monotonic() + 2.5
        broker.publish(changes(range(2, 4)))
        wait_until(lambda: len(api.applied) >= 3 * PEOPLE, 30, "every change once the API is back")
        wait_until(lambda: broker.committed() == 3 * PEOPLE, 20, "offsets committed")
    assert api.answered_503 > 0 and worker.stats["retries"] > 0
    assert set(api.applied.values()) == {1}, "an event was applied twice"
    assert api.store == {f"P{p:03d}": 3 for p in range(PEOPLE)}
    assert worker.stats["applied"] == 3 * PEOPLE
