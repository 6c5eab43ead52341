"""The catalog's concrete topics for review (plain YAML) or for clusters created with the stock tools (a script).

Production clusters need a replication factor the reviewed catalog does not carry (it suits one broker), so both
formats take it as an override, like the Strimzi output.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from onceonly.catalog import ConcreteTopic


def with_replicas(topics: Iterable[ConcreteTopic], replicas: int | None) -> list[ConcreteTopic]:
    """Copies of ``topics`` with the replication factor overridden (None keeps the catalog's)."""
    return [t.model_copy(update={"replication_factor": replicas}) if replicas else t for t in topics]


def topics_listing(topics: Iterable[ConcreteTopic]) -> list[dict[str, Any]]:
    """Name, partitions, replicas, config, owner and key of each topic: the reviewable form of the catalog."""
    return [
        {
            "name": t.name,
            "partitions": t.partitions,
            "replication_factor": t.replication_factor,
            "config": dict(t.config),
            "owner": t.owner,
            "key": t.key,
            **({"entity_type": t.entity_type} if t.entity_type else {}),
        }
        for t in topics
    ]


def kafka_topics_script(topics: Iterable[ConcreteTopic], *, min_insync_replicas: int | None = None) -> str:
    """``kafka-topics.sh --create --if-not-exists`` per topic; reads ``$BOOTSTRAP`` and ``$COMMAND_CONFIG``."""
    lines = [
        "#!/bin/sh",
        "# Rendered by `onceonly topics render --format kafka-topics`; do not edit, render again.",
        'set -eu\n: "${BOOTSTRAP:?}" "${COMMAND_CONFIG:?}"',
        'KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"',
    ]
    for t in topics:
        config = dict(t.config)
        if min_insync_replicas is not None:
            config["min.insync.replicas"] = str(min_insync_replicas)
        configs = " ".join(f"--config {shlex.quote(f'{k}={v}')}" for k, v in config.items())
        lines.append(
            '"$KAFKA_BIN"/kafka-topics.sh --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG"'
            f" --create --if-not-exists --topic {shlex.quote(t.name)} --partitions {t.partitions}"
            f" --replication-factor {t.replication_factor} {configs}"
        )
    return "\n".join(lines) + "\n"
