"""Events/s through ``Publisher.publish_many`` (validation, Avro, Confluent framing, acks) next to raw
confluent-kafka producing values of the same size with the same producer settings, in the same run.

Both sides wait for every acknowledgement (idempotent producer, acks=all, linger 5 ms). The raw side produces
pre-encoded bytes, so the ratio is the price of what the publisher adds: filling defaults, JSON-to-Avro
coercion, the data-standard checks and Avro encoding. Starts its own embedded stack unless
ONCEONLY_BOOTSTRAP_SERVERS (and ONCEONLY_REGISTRY_URL) point at one.

    python bench/publish.py [--events 50000] [--batch 5000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import date, timedelta
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from onceonly import AsyncPublisher, Publisher
from onceonly.kafka import confluent_config, confluent_producer_config
from onceonly.settings import Settings
from onceonly.stack.cluster import scratch_cluster
from onceonly.standard.identity import id18_check_char
from onceonly.topics import apply_topics


def person_id(n: int) -> str:
    """The n-th of a million distinct valid ID numbers."""
    born = date(1960, 1, 1) + timedelta(days=n // 1000)
    first17 = f"110105{born:%Y%m%d}{n % 1000:03d}"
    return first17 + id18_check_char(first17)


def change(n: int, version: int) -> dict[str, Any]:
    key = person_id(n)
    return {
        "entity_type": "person",
        "entity_key": key,
        "authority_version": version,
        "op": "u",
        "event_type": "moved_in",
        "after": {
            "id_number": key,
            "name": "王芳",
            "sex": "2",
            "birth_date": date(int(key[6:10]), int(key[10:12]), int(key[12:14])),
            "household_id": "110105000123",
            "district_code": "110105",
            "address": "北京市朝阳区建国路1号院3号楼2单元101",
        },
    }


def raw_rate(settings: Settings, topic: str, keys: list[bytes], value: bytes) -> float:
    producer = Producer(confluent_producer_config(settings))
    start = time.perf_counter()
    for key in keys:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    return len(keys) / (time.perf_counter() - start)


def publisher_rate(publisher: Publisher, changes: list[dict[str, Any]], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(changes), batch):
        publisher.publish_many(changes[i : i + batch])
    return len(changes) / (time.perf_counter() - start)


def async_rate(settings: Settings, changes: list[dict[str, Any]], batch: int) -> float:
    async def run() -> float:
        async with AsyncPublisher(settings) as publisher:
            await publisher.publish_many(changes[:10])  # warm: schema registered, producer id fetched
            start = time.perf_counter()
            for i in range(0, len(changes), batch):
                await publisher.publish_many(changes[i : i + batch])
            return len(changes) / (time.perf_counter() - start)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5_000, help="changes per publish_many call")
    parser.add_argument("--rounds", type=int, default=2, help="best of N for each side, alternating")
    args = parser.parse_args()
    with scratch_cluster("bench") as settings:
        apply_topics(settings)
        raw_topic = settings.topic("bench.raw")
        admin = AdminClient(confluent_config(settings))
        admin.create_topics([NewTopic(raw_topic, 3, 1)])[raw_topic].result(30)
        with Publisher(settings) as publisher:
            sample = publisher.prepare(change(0, 1))
            publisher.publish_many([change(0, 1)])  # warm: schema registered, producer id fetched
            keys = [person_id(n).encode() for n in range(args.events)]
            raw, ours, ours_async = 0.0, 0.0, 0.0
            for r in range(args.rounds):
                changes = [change(n, r + 2) for n in range(args.events)]
                raw = max(raw, raw_rate(settings, raw_topic, keys, sample.value))
                ours = max(ours, publisher_rate(publisher, changes, args.batch))
            ours_async = async_rate(settings, [change(n, args.rounds + 2) for n in range(args.events)], args.batch)
    result = {
        "bench": "publish",
        "events_per_round": args.events,
        "value_bytes": len(sample.value),
        "batch": args.batch,
        "raw_confluent_per_s": round(raw),
        "publisher_per_s": round(ours),
        "async_publisher_per_s": round(ours_async),
        "ratio": round(ours / raw, 3),
        "async_ratio": round(ours_async / raw, 3),
        "topic_records_at_end": {"raw": args.events * args.rounds, "change.person": args.events * (args.rounds + 1)},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
