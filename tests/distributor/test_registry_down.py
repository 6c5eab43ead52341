"""The schema registry away: the distributor pauses and retries, dead-letters nothing, and delivers everything once
the registry is back (a decode failure caused by the registry is the platform's fault, never the record's)."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

import pytest
from distributor_kit import THREE_HOLDERS, Kafka, person, person_id, running, wait_for, write_agreements
from subscriber.subscriber_kit import TcpProxy

from onceonly.settings import Settings
from onceonly.standard import RegistryClient
from services.distributor import Distributor, load_agreements

pytestmark = pytest.mark.broker


def test_registry_down_pauses_distribution_and_nothing_is_dead_lettered(
    topics: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = urlparse(topics.registry_url)
    proxy = TcpProxy((registry.hostname or "127.0.0.1", registry.port or 8081))
    through_proxy = topics.model_copy(update={"registry_url": f"http://127.0.0.1:{proxy.port}"})
    agreements = load_agreements(write_agreements(tmp_path / "onceonly.yaml", THREE_HOLDERS[:1]))  # hrss: all
    distributor = Distributor(agreements, through_proxy, RegistryClient(through_proxy.registry_url), batch_size=20)
    kafka = Kafka(topics)  # the authority still reaches the registry: only the distributor's path is cut
    keys = [person_id(i) for i in range(40)]
    caplog.set_level(logging.WARNING, logger="services.distributor")
    try:
        with running(distributor):
            proxy.down()
            kafka.publish(*(person(k, 1) for k in keys))
            wait_for(lambda: caplog.text.count("pausing, retry in") >= 2, 60, "the distributor to pause twice", 0.2)
            assert kafka.read("inbox.hrss") == [] and kafka.read("dlq.distributor") == []
            proxy.up()
            wait_for(lambda: len(kafka.read("inbox.hrss")) >= len(keys), 60, "delivery after the registry is back")
    finally:
        proxy.down()
    assert sorted(r["entity_key"] for r in kafka.decoded("inbox.hrss")) == sorted(keys)
    assert kafka.read("dlq.distributor") == []
