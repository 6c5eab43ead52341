"""Make the cluster's topics match the catalog: create what is missing, report what differs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from onceonly.catalog import Catalog, ConcreteTopic, load_catalog, load_departments
from onceonly.errors import BrokerUnavailable, OnceonlyError
from onceonly.kafka import confluent_config
from onceonly.settings import Settings


@dataclass
class TopicAction:
    name: str
    action: Literal["create", "exists", "mismatch"]
    partitions: int
    detail: str = ""


@dataclass
class ApplyReport:
    actions: list[TopicAction] = field(default_factory=list)

    @property
    def mismatches(self) -> list[TopicAction]:
        return [a for a in self.actions if a.action == "mismatch"]


def admin(settings: Settings) -> AdminClient:
    return AdminClient(confluent_config(settings))


def existing_partitions(client: AdminClient, timeout: float = 10.0) -> dict[str, int]:
    try:
        md = client.list_topics(timeout=timeout)
    except Exception as e:
        raise BrokerUnavailable(f"the Kafka cluster did not answer: {e}", hint="is the stack up?") from e
    return {name: len(t.partitions) for name, t in md.topics.items()}


def desired_topics(
    settings: Settings, catalog: Catalog | None = None, departments: list[str] | None = None
) -> list[ConcreteTopic]:
    catalog = catalog or load_catalog()
    departments = departments if departments is not None else load_departments().codes()
    topics = catalog.concrete(departments)
    for t in topics:
        t.name = settings.topic(t.name)
    return topics


def apply_topics(
    settings: Settings,
    *,
    dry_run: bool = False,
    catalog: Catalog | None = None,
    departments: list[str] | None = None,
    timeout: float = 30.0,
) -> ApplyReport:
    """Create missing catalog topics; existing ones with another partition count are reported, not changed."""
    client = admin(settings)
    have = existing_partitions(client)
    report = ApplyReport()
    to_create: list[NewTopic] = []
    for t in desired_topics(settings, catalog, departments):
        if t.name in have:
            if have[t.name] != t.partitions:
                report.actions.append(
                    TopicAction(
                        t.name,
                        "mismatch",
                        have[t.name],
                        f"has {have[t.name]} partitions, the catalog says {t.partitions}",
                    )
                )
            else:
                report.actions.append(TopicAction(t.name, "exists", t.partitions))
            continue
        report.actions.append(TopicAction(t.name, "create", t.partitions))
        to_create.append(NewTopic(t.name, t.partitions, t.replication_factor, config=t.config))
    if dry_run or not to_create:
        return report
    futures = client.create_topics(to_create, request_timeout=timeout)
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
        except Exception as e:
            if "TOPIC_ALREADY_EXISTS" in str(e):
                continue
            raise OnceonlyError(f"could not create topic {name}: {e}") from e
    return report
