"""kafka-python, the admin client and Faust (aiokafka) all work against the session broker."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import faust
from kafka import KafkaProducer

from onceonly.kafka import faust_app_settings, kafka_python_config
from onceonly.settings import Settings
from onceonly.topics import admin, existing_partitions


def test_faust_agent_consumes_what_kafka_python_produced(topics: Settings, tmp_path: Path) -> None:
    topic_name = topics.topic("change.person")
    assert topic_name in existing_partitions(admin(topics))  # the admin client sees the catalog topics

    sent = [f"value-{i}".encode() for i in range(50)]
    producer = KafkaProducer(**kafka_python_config(topics, acks="all"))
    for i, v in enumerate(sent):
        producer.send(topic_name, key=f"k{i % 7}".encode(), value=v)
    producer.flush(timeout=30)
    producer.close()

    app = faust.App(f"foundation-{uuid.uuid4().hex[:8]}", **faust_app_settings(topics), datadir=str(tmp_path))
    source = app.topic(topic_name, key_type=bytes, value_type=bytes, value_serializer="raw", key_serializer="raw")
    got: list[bytes] = []
    done = asyncio.Event()

    @app.agent(source)
    async def collect(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            got.append(value)
            if len(got) == len(sent):
                done.set()

    async def main() -> None:
        await app.start()
        try:
            await asyncio.wait_for(done.wait(), timeout=60)
        finally:
            await asyncio.wait_for(app.stop(), timeout=20)

    asyncio.run(main())
    assert sorted(got) == sorted(sent)
