"""Helpers for the dead-letter, scorecard and operator-page tests: the CLI in this process, dead letters and inbox
records written the way the subscriber and the distributor write them, and reading topics back."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from onceonly.cli import main
from onceonly.deadletter import Stage, dead_letter_headers
from onceonly.kafka import confluent_producer_config
from onceonly.settings import Settings
from onceonly.standard import Serde, change_schema
from services.distributor.reading import read_to_end, whole_topics

Cli = Callable[..., tuple[int, str, str]]
HOLDER = "housing_fund"


def cli_runner(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    """``cli(*args) -> (exit code, stdout, stderr)`` through ``onceonly.cli.main``, as a user's shell would run it."""
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REGISTRY_URL": settings.registry_url,
        "REDIS_URL": settings.redis_url or "",
        "TOPIC_PREFIX": settings.topic_prefix,
        "BROKER_QUIRKS": settings.broker_quirks,
        "STATE_DIR": str(tmp_path),
        "OPERATOR": "test-operator",
    }.items():
        monkeypatch.setenv(f"ONCEONLY_{name}", value)
    monkeypatch.setenv("COLUMNS", "160")  # rich tables as on an ordinary terminal, not folded at 80 columns

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["onceonly", *args])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def produce(settings: Settings, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
    producer = Producer(confluent_producer_config(settings))
    producer.produce(settings.topic(topic), key=key, value=value, headers=headers or [])
    assert producer.flush(30) == 0


def encode_change(serde: Serde, settings: Settings, record: dict[str, Any], topic: str) -> bytes:
    return serde.encode(change_schema(record["entity_type"]), f"{settings.topic(topic)}-value", record)


def write_dead_letter(
    settings: Settings,
    source: str,
    key: bytes,
    value: bytes | None,
    reason: str,
    *,
    stage: Stage = "TASK_PUT",
    holder: str | None = None,
    origin: str | None = None,
    event_id: str | None = None,
) -> None:
    """A dead letter exactly as the subscriber (source = holder) or the distributor writes one."""
    origin = origin or (f"inbox.{source}" if source != "distributor" else "change.person")
    headers = dead_letter_headers(
        connector=f"subscriber.{source}" if source != "distributor" else "distributor",
        topic=settings.topic(origin),
        partition=0,
        offset=7,
        error=RuntimeError(reason),
        stage=stage,
        holder=holder if holder is not None else (source if source != "distributor" else ""),
        event_id=event_id,
    )
    produce(settings, f"dlq.{source}", key, value, headers)


def read_all(settings: Settings, topic: str) -> list[Any]:
    """Every record of a topic (all partitions), read to its end."""
    return list(read_to_end(settings, whole_topics(settings, [settings.topic(topic)])))
