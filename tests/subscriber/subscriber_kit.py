"""Helpers for subscriber tests: the department store, change records, the broker, workers in threads."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from sinks.sink_kit import DEATH_MAPPING, DIED, PERSON_MAPPING

from onceonly.kafka import confluent_config, confluent_producer_config
from onceonly.settings import Settings
from onceonly.stack.process import free_port
from onceonly.standard import change_schema, event_id
from onceonly.testing import process_env
from services.subscriber import Codec, Subscriber, SubscriberConfig, make_subscriber

HOLDER = "housing_fund"
SOURCES = ["change.person", "change.death"]  # until the distributor feeds inbox.housing_fund
PERSON_COLUMNS = """sfzhm VARCHAR(18) PRIMARY KEY, xm VARCHAR(40) NOT NULL, dz VARCHAR(200),
    xzqh VARCHAR(6) CHECK (xzqh IS NULL OR xzqh <> '000000'), zt VARCHAR(10) NOT NULL DEFAULT 'normal',
    bbh BIGINT, sjid VARCHAR(64), gzbz BOOLEAN, swrq DATE"""

# The housing fund's own table (its names: sfzhm = ID number, xm = name, dz = address, xzqh = district code,
# zt = status, bbh = version, sjid = event id, gzbz = corrected, swrq = date of death; '000000' is not a district
# the fund accepts), plus a log every insert or update writes to by a trigger, not by our code: "applied exactly
# once" is counted by the database itself.
STORE_DDL = {
    "sqlite": [
        f"CREATE TABLE gjj_grxx ({PERSON_COLUMNS})",
        "CREATE TABLE apply_log (n INTEGER PRIMARY KEY AUTOINCREMENT, sjid VARCHAR(64))",
        "CREATE TRIGGER gjj_ins AFTER INSERT ON gjj_grxx BEGIN INSERT INTO apply_log(sjid) VALUES (NEW.sjid); END",
        "CREATE TRIGGER gjj_upd AFTER UPDATE ON gjj_grxx BEGIN INSERT INTO apply_log(sjid) VALUES (NEW.sjid); END",
        "PRAGMA journal_mode=WAL",
    ],
    "postgresql": [
        f"CREATE TABLE gjj_grxx ({PERSON_COLUMNS})",
        "CREATE TABLE apply_log (n SERIAL PRIMARY KEY, sjid VARCHAR(64))",
        """CREATE FUNCTION log_apply() RETURNS trigger AS $$
           BEGIN INSERT INTO apply_log(sjid) VALUES (NEW.sjid); RETURN NEW; END $$ LANGUAGE plpgsql""",
        "CREATE TRIGGER gjj_apply AFTER INSERT OR UPDATE ON gjj_grxx FOR EACH ROW EXECUTE FUNCTION log_apply()",
    ],
}


def make_store(url: str) -> str:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in STORE_DDL[engine.dialect.name]:
            conn.exec_driver_sql(statement)
    engine.dispose()
    return url


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def table(url: str) -> list[tuple[Any, ...]]:
    """What the department holds: (id, name, address, district, status, version, corrected, date of death)."""
    got = query(url, "SELECT sfzhm, xm, dz, xzqh, zt, bbh, gzbz, swrq FROM gjj_grxx ORDER BY sfzhm")
    return [(*r[:6], bool(r[6]), str(r[7]) if r[7] is not None else None) for r in got]


def subscriber_config(url: str, **overrides: Any) -> SubscriberConfig:
    base: dict[str, Any] = {
        "department": HOLDER,
        "source_topic": SOURCES,
        "batch_size": 100,
        "retry_backoff_max": 1.0,
        "sink": {"kind": "sql", "url": url, "tables": {"person": PERSON_MAPPING, "death": DEATH_MAPPING}},
    }
    return SubscriberConfig.model_validate({**base, **overrides})


def person_change(
    key: str,
    version: int,
    op: str = "u",
    *,
    supersedes: str | None = None,
    correction: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """A person change record as the public security bureau publishes it."""
    after = {
        "id_number": key,
        "name": f"name v{version}",
        "sex": "2",
        "birth_date": date(1980, 1, 1),
        "address": f"address v{version}",
        **fields,
    }
    return _envelope("public_security", "person", key, version, op, after, supersedes, correction) | {
        "event_type": "identifier_upgraded" if supersedes else {"c": "created", "d": "moved_out"}.get(op, "updated")
    }


def death_change(id_number: str, version: int = 1, op: str = "c") -> dict[str, Any]:
    """A death as the health commission publishes it (``op`` d retracts a certificate issued in error)."""
    record = {"id_number": id_number, "certificate_no": f"DC{id_number}", "date_of_death": DIED, "place": None}
    return _envelope("health", "death", f"DC{id_number}", version, op, record) | {"event_type": "died"}


def _envelope(
    authority: str,
    entity_type: str,
    key: str,
    version: int,
    op: str,
    record: dict[str, Any],
    supersedes: str | None = None,
    correction: bool = False,
) -> dict[str, Any]:
    return {
        "event_id": event_id(authority, entity_type, key, version),
        "event_type": "updated",
        "op": op,
        "entity_type": entity_type,
        "entity_key": key,
        "authority": authority,
        "authority_version": version,
        "recorded_at": int(time.time() * 1000),
        "correction": correction,
        "supersedes_key": supersedes,
        "restrictions": [],
        "before": record if op == "d" else None,
        "after": None if op == "d" else record,
    }


@dataclass
class Broker:
    """The test's view of the broker: publish changes or raw bytes, read topics back, look at commits."""

    settings: Settings
    codec: Codec
    _schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    def publish(self, records: list[dict[str, Any]]) -> None:
        """Change records, each to its entity type's change topic, keyed by entity, as an authority publishes."""
        producer = Producer(confluent_producer_config(self.settings))
        for r in records:
            physical = self.settings.topic(f"change.{r['entity_type']}")
            value = self.codec.encode(self.schema(r["entity_type"]), f"{physical}-value", r)
            producer.produce(physical, key=r["entity_key"].encode(), value=value)
        assert producer.flush(30) == 0

    def schema(self, entity_type: str) -> dict[str, Any]:
        """One schema object per entity type, so the serde's cache keeps it (it caches by object)."""
        if entity_type not in self._schemas:
            self._schemas[entity_type] = change_schema(entity_type)
        return self._schemas[entity_type]

    def publish_raw(self, key: bytes, value: bytes | None, topic: str = SOURCES[0]) -> None:
        producer = Producer(confluent_producer_config(self.settings))
        producer.produce(self.settings.topic(topic), key=key, value=value)
        assert producer.flush(30) == 0

    def read(self, topic: str, count: int, timeout: float = 20.0, settle: float = 0.0) -> list[Any]:
        """The first ``count`` records of a topic (all partitions), without joining a group; with ``settle``,
        also whatever else arrives until the topic has been quiet that long."""
        physical = self.settings.topic(topic)
        consumer = Consumer(confluent_config(self.settings, **{"group.id": "reader", "enable.auto.commit": False}))
        parts = consumer.list_topics(physical, timeout=10).topics[physical].partitions
        consumer.assign([TopicPartition(physical, p, 0) for p in parts])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            got.extend(m for m in consumer.consume(num_messages=count - len(got), timeout=0.5) if m.error() is None)
        while settle and (more := [m for m in consumer.consume(1000, timeout=settle) if m.error() is None]):
            got.extend(more)
        consumer.close()
        return got

    def receipts(self, count: int, settle: float = 0.0) -> list[dict[str, Any]]:
        return [dict(self.codec.decode(m.value()).record) for m in self.read("receipts", count, settle=settle)]

    def committed(self, group: str = f"subscriber.{HOLDER}", topics: Sequence[str] = SOURCES) -> int:
        """The sum of a group's committed offsets on the topics: how many records it has finished."""
        consumer = Consumer(confluent_config(self.settings, **{"group.id": self.settings.topic_prefix + group}))
        wanted: list[TopicPartition] = []
        for topic in topics:
            physical = self.settings.topic(topic)
            parts = consumer.list_topics(physical, timeout=10).topics[physical].partitions
            wanted += [TopicPartition(physical, p) for p in parts]
        offsets = consumer.committed(wanted, timeout=10)
        consumer.close()
        return sum(max(tp.offset, 0) for tp in offsets)


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextmanager
def running(config: SubscriberConfig, settings: Settings, codec: Codec) -> Iterator[Subscriber]:
    """A subscriber worker in a thread; leaving the block stops it and checks it stopped in time."""
    worker = make_subscriber(config, settings, codec)
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            worker.run(stop)
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "the worker did not stop within 15 s"
        if failure:
            raise failure[0]


class TcpProxy:
    """A TCP forwarder the test can cut (connecting is refused, as with a stopped database) or freeze (connections
    stay open but nothing gets through, as with a database host that hangs)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.frozen = threading.Event()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and break the open ones."""
        with self._lock:
            if self._server is not None:
                with suppress(OSError):  # wakes the thread blocked in accept(); close() alone would not
                    self._server.shutdown(socket.SHUT_RDWR)
                self._server.close()
                self._server = None
            for c in self._conns:
                with suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self._conns.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)
                dst.sendall(data)
        for s in (src, dst):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def write_config(path: Path, url: str, **overrides: Any) -> Path:
    """An onceonly.yaml with one subscriber (the housing fund) writing to ``url``."""
    entry = subscriber_config(url, **overrides).model_dump(mode="json", by_alias=True, exclude={"department"})
    path.write_text(yaml.safe_dump({"subscribers": {HOLDER: entry}}, sort_keys=False))
    return path


def spawn_subscriber(config: Path, settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``onceonly subscriber run`` as its own process, pointed at the test's broker and namespace (``args``: more
    options, e.g. ``--metrics-port``)."""
    env = process_env(settings, ONCEONLY_STATE_DIR=str(config.parent / "state"))
    cmd = [sys.executable, "-m", "onceonly", "subscriber", "run", str(config), "--department", HOLDER, *args]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=config.parent)
