"""Changes/s through the distributor with fan-out to 4 holders, next to the raw client doing the same fan-out.

Both read the same pre-published change topic with confluent-kafka, in batches of the same size, and commit after
every batch. The raw loop only copies bytes: consume, produce each record to 4 topics, wait for the acks, commit.
The distributor also decodes, applies 4 agreements, encodes 4 projections, hash-chains 4 ledger entries and
writes the entity state, in phases that are each acknowledged. Timing starts when the consumer group assigned
the partitions (the embedded broker holds joins for seconds) and ends when the last batch is acknowledged.

    python bench/distribute.py [--changes 20000] [--keys 2000] [--batch 500]

Without ONCEONLY_BOOTSTRAP_SERVERS it starts the embedded stack on free ports and stops it afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from onceonly.kafka import confluent_consumer_config, confluent_producer_config
from onceonly.settings import Settings
from onceonly.stack.cluster import scratch_cluster
from onceonly.standard import RegistryClient, Serde, change_schema, event_id
from onceonly.standard.identity import id18_check_char
from onceonly.topics import apply_topics
from services.distributor import Distributor, load_agreements

HOLDERS = ("hrss", "tax", "health", "civil_affairs")
FIELDS = ["id_number", "name", "sex", "birth_date", "district_code", "address", "status"]


def person_id(n: int) -> str:
    first17 = f"110105{1950 + n % 50}{n % 12 + 1:02d}{n % 28 + 1:02d}{n % 1000:03d}"
    return first17 + id18_check_char(first17)


def change(key: str, version: int) -> dict[str, Any]:
    import datetime

    return {
        "event_id": event_id("public_security", "person", key, version),
        "event_type": "moved_in",
        "op": "u",
        "entity_type": "person",
        "entity_key": key,
        "authority": "public_security",
        "authority_version": version,
        "recorded_at": 1_760_000_000_000 + version,
        "restrictions": [],
        "source": {"connector": "sdk", "department": "public_security", "table": "outbox", "position": str(version)},
        "ts_ms": 1_760_000_000_000 + version,
        "after": {
            "id_number": key,
            "name": "王芳",
            "sex": "2",
            "birth_date": datetime.date(1980, 1, 1),
            "ethnicity": "01",
            "household_id": "110105000123",
            "district_code": "110105",
            "address": f"朝阳区建国路{version}号",
            "status": "active",
        },
    }


def publish(settings: Settings, changes: int, keys: int) -> int:
    """The input: ``changes`` person changes over ``keys`` keys; returns the bytes published."""
    serde = Serde(RegistryClient(settings.registry_url))
    schema = change_schema("person")
    topic = settings.topic("change.person")
    producer = Producer(confluent_producer_config(settings, **{"linger.ms": 20}))
    ids = [person_id(i) for i in range(keys)]
    size = 0
    for n in range(changes):
        key = ids[n % keys]
        value = serde.encode(schema, f"{topic}-value", change(key, n // keys + 1))
        size += len(value)
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    return size


def raw_fanout(settings: Settings, changes: int, batch: int, fanout: int) -> float:
    """Seconds to consume every change, produce it to ``fanout`` topics, wait for acks, commit per batch."""
    targets = [settings.topic(f"inbox.{h}") for h in HOLDERS[:fanout]]
    consumer = Consumer(confluent_consumer_config(settings, f"{settings.topic_prefix}raw-{fanout}"))
    producer = Producer(confluent_producer_config(settings))
    assigned = threading.Event()
    consumer.subscribe([settings.topic("change.person")], on_assign=lambda *_: assigned.set())
    done, started = 0, 0.0
    while done < changes:
        messages = consumer.consume(num_messages=batch, timeout=0.5)
        if assigned.is_set() and not started:
            started = time.perf_counter()
        if not messages:
            continue
        for m in messages:
            for t in targets:
                producer.produce(t, key=m.key(), value=m.value())
        producer.flush(60)
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            last[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in last.items()], asynchronous=False)
        done += len(messages)
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def distributor_run(settings: Settings, changes: int, batch: int, config: Path) -> float:
    distributor = Distributor(
        load_agreements(config), settings, RegistryClient(settings.registry_url), batch_size=batch
    )
    stop = threading.Event()
    thread = threading.Thread(target=distributor.run, args=(stop,), daemon=True)
    thread.start()
    if not distributor.assigned.wait(120):
        raise SystemExit("the distributor did not join its group")
    started = time.perf_counter()
    while distributor.stats["changes"] + distributor.stats["already_distributed"] < changes:
        time.sleep(0.01)
        if not thread.is_alive():
            raise SystemExit("the distributor stopped early")
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join(30)
    return elapsed


def agreements_file(directory: Path) -> Path:
    items = [
        {
            "id": f"bench-{holder}",
            "holder": holder,
            "purpose": "benchmark",
            "legal_basis": "none (benchmark)",
            "valid_from": "2020-01-01",
            "grants": {"person": FIELDS},
        }
        for holder in HOLDERS
    ]
    path = directory / "agreements.yaml"
    path.write_text(yaml.safe_dump({"agreements": items}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    with scratch_cluster("bench") as settings:
        apply_topics(settings)
        size = publish(settings, args.changes, args.keys)
        each = size / args.changes
        print(f"input: {args.changes} person changes over {args.keys} keys, {each:.0f} bytes each, 3 partitions")
        raw1 = raw_fanout(settings, args.changes, args.batch, 1)
        raw4 = raw_fanout(settings, args.changes, args.batch, 4)
        config = agreements_file(Path(tempfile.mkdtemp(prefix="onceonly-bench-")))
        dist = distributor_run(settings, args.changes, args.batch, config)
    n = args.changes
    print(f"raw consume+produce, 1 copy:       {n / raw1:10,.0f} changes/s")
    print(f"raw consume+produce, 4 copies:     {n / raw4:10,.0f} changes/s")
    print(f"distributor, fan-out to 4 holders: {n / dist:10,.0f} changes/s  ({4 * n / dist:,.0f} deliveries/s)")
    print(f"ratio distributor / raw 4 copies:  {raw4 / dist:10.2f}  (distributor / raw 1 copy: {raw1 / dist:.2f})")
    print(
        f"written by the distributor: {4 * n} inbox records, {4 * n} ledger entries (one partition), {n} state records;"
        f" the raw loops wrote {5 * n} records into the same inboxes first"
    )


if __name__ == "__main__":
    main()
