"""Changes/s a subscriber applies into SQLite and into PostgreSQL, next to raw confluent-kafka consume, same run.

Every rate reads the same topics: ``--people`` persons with ``--versions`` changes each, on change.person's three
partitions, Avro in the Confluent framing. Raw consume is ``Consumer.consume`` of every record with no decoding
(the ceiling); apply is the whole subscriber: decode, version guard, one transaction per batch with the
watermarks, a receipt per change, synchronous offset commit. Apply is timed from partition assignment to the last
commit, so the group join (held for seconds by the embedded broker) is not counted.

    python bench/apply.py [--people 10000] [--versions 5] [--batch-size 500] [--engine faust|loop|both]

Both subscriber hosts are measured by default (``engine: faust``, the faust-streaming agent, and ``engine: loop``).

Uses ``ONCEONLY_BOOTSTRAP_SERVERS`` / ``ONCEONLY_REGISTRY_URL`` when set, else starts an embedded stack for the run;
PostgreSQL is the machine's (127.0.0.1:5432, trust auth), skipped if absent.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Consumer, Producer, TopicPartition

from onceonly.kafka import confluent_config, confluent_producer_config
from onceonly.settings import Settings
from onceonly.stack.cluster import scratch_cluster
from onceonly.stack.process import port_open
from onceonly.standard import RegistryClient, Serde, change_schema, event_id
from onceonly.topics import apply_topics
from services.subscriber import SubscriberConfig, make_subscriber

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"
TABLE = """CREATE TABLE gjj_grxx (sfzhm VARCHAR(18) PRIMARY KEY, xm VARCHAR(40) NOT NULL, dz VARCHAR(200),
    xzqh VARCHAR(6), zt VARCHAR(10) NOT NULL DEFAULT 'normal', bbh BIGINT, sjid VARCHAR(64))"""
MAPPING = {
    "table": "gjj_grxx",
    "key_column": "sfzhm",
    "columns": {"name": "xm", "address": "dz", "district_code": "xzqh"},
    "version_column": "bbh",
    "event_id_column": "sjid",
    "deleted_column": "zt",
    "deleted_value": "cancelled",
}


def person_id(p: int) -> str:
    return f"110101{19500101 + p:08d}{p % 10000:04d}"


def publish(settings: Settings, people: int, versions: int) -> tuple[int, int]:
    """The changes, version by version; returns (records, bytes of values)."""
    serde = Serde(RegistryClient(settings.registry_url))
    schema = change_schema("person")
    topic = settings.topic("change.person")
    producer = Producer(confluent_producer_config(settings, **{"linger.ms": 20, "batch.num.messages": 10000}))
    count = size = 0
    for v in range(1, versions + 1):
        for p in range(people):
            key = person_id(p)
            record: dict[str, Any] = {
                "event_id": event_id("public_security", "person", key, v),
                "event_type": "created" if v == 1 else "moved_in",
                "op": "c" if v == 1 else "u",
                "entity_type": "person",
                "entity_key": key,
                "authority": "public_security",
                "authority_version": v,
                "recorded_at": int(time.time() * 1000),
                "restrictions": [],
                "before": None,
                "after": {
                    "id_number": key,
                    "name": f"王芳{p}",
                    "sex": "2",
                    "birth_date": date(1950, 1, 1),
                    "district_code": "110105",
                    "address": f"北京市朝阳区建国路{v}号院{p}号楼",
                },
            }
            value = serde.encode(schema, f"{topic}-value", record)
            size += len(value)
            count += 1
            while True:
                try:
                    producer.produce(topic, key=key.encode(), value=value)
                    break
                except BufferError:
                    producer.poll(0.1)
    assert producer.flush(60) == 0, "not every change was published"
    return count, size


def raw_consume(settings: Settings, total: int) -> float:
    """Records/s of ``Consumer.consume`` over every partition from the start, nothing done with them."""
    topic = settings.topic("change.person")
    consumer = Consumer(
        confluent_config(settings, **{"group.id": f"raw-{uuid.uuid4().hex}", "enable.auto.commit": False})
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    got = 0
    start = time.perf_counter()
    while got < total:
        got += sum(1 for m in consumer.consume(num_messages=10000, timeout=1.0) if m.error() is None)
    elapsed = time.perf_counter() - start
    consumer.close()
    return total / elapsed


def apply_rate(settings: Settings, url: str, total: int, batch_size: int, engine: str) -> float:
    """Changes/s of one subscriber worker on ``engine``, from partition assignment to the last commit."""
    config = SubscriberConfig.model_validate(
        {
            "department": "housing_fund",
            "engine": engine,
            "source_topic": "change.person",
            "group_id": f"bench-{uuid.uuid4().hex[:8]}",
            "batch_size": batch_size,
            "sink": {"kind": "sql", "url": url, "tables": {"person": MAPPING}},
        }
    )
    worker = make_subscriber(config, settings)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not worker.assigned:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("the subscriber never got its partitions")
        time.sleep(0.005)
    start = time.perf_counter()
    while worker.stats["applied"] < total:
        if not thread.is_alive():
            raise SystemExit("the subscriber stopped before applying everything")
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join(15)
    return total / elapsed


def make_table(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(TABLE)
    engine.dispose()


@contextmanager
def postgres_db() -> Iterator[str | None]:
    if not port_open("127.0.0.1", 5432):
        yield None
        return
    name = f"onceonly_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--engine", choices=["faust", "loop", "both"], default="both", help="subscriber host(s)")
    args = parser.parse_args()
    engines = ["faust", "loop"] if args.engine == "both" else [args.engine]
    result: dict[str, Any] = {"bench": "apply", "batch_size": args.batch_size}
    rates: dict[str, float] = {}
    with scratch_cluster("bench") as settings, tempfile.TemporaryDirectory() as tmp:
        apply_topics(settings)
        total, size = publish(settings, args.people, args.versions)
        result |= {"records": total, "partitions": 3, "topic_mib": round(size / 2**20, 1)}
        raw = raw_consume(settings, total)
        for engine in engines:  # a fresh store per run: a second run into the same one would only skip
            sqlite = f"sqlite:///{tmp}/gjj-{engine}.db"
            make_table(sqlite)
            rates[f"{engine}_sqlite"] = apply_rate(settings, sqlite, total, args.batch_size, engine)
            with postgres_db() as pg:
                if pg is not None:
                    make_table(pg)
                    rates[f"{engine}_postgresql"] = apply_rate(settings, pg, total, args.batch_size, engine)
        raw = max(raw, raw_consume(settings, total))  # best of two, before and after the applies
    result["raw_consume_per_s"] = round(raw)
    for name, rate in rates.items():
        result[f"{name}_apply_per_s"] = round(rate)
        result[f"{name}_ratio"] = round(rate / raw, 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
