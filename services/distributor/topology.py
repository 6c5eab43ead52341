"""The distributor's topics under a deployment's prefix, and the registry subjects it must own before it starts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from onceonly.catalog import Catalog, load_catalog
from onceonly.errors import ConfigError
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, platform_schema, subject_for
from services.distributor.agreements import Agreements
from services.distributor.projection import Route

Schema = dict[str, Any]


@dataclass(frozen=True)
class Topics:
    """Physical topic names (prefix applied)."""

    settings: Settings
    catalog: Catalog

    @classmethod
    def of(cls, settings: Settings, root: Path | None = None) -> Topics:
        return cls(settings, load_catalog(root / "topics.yaml" if root else None))

    def change(self, entity_type: str) -> str:
        return self.settings.topic(self.catalog.change_topic(entity_type))

    def state(self, entity_type: str) -> str:
        return self.settings.topic(f"state.{entity_type}")

    def inbox(self, holder: str) -> str:
        return self.settings.topic(f"inbox.{holder}")

    @property
    def entity_types(self) -> list[str]:
        return self.catalog.entity_types

    @cached_property
    def by_change_topic(self) -> dict[str, str]:
        return {self.change(e): e for e in self.entity_types}

    @property
    def ledger(self) -> str:
        return self.settings.topic("audit.deliveries")

    @property
    def interest(self) -> str:
        return self.settings.topic("interest")

    @property
    def dlq(self) -> str:
        return self.settings.topic("dlq.distributor")

    def inbox_compatibility(self) -> str:
        for spec in self.catalog.topics:
            if spec.name == "inbox":
                return spec.compatibility
        return "BACKWARD"

    def required(self, holders: list[str]) -> list[str]:
        return [
            *(self.change(e) for e in self.entity_types),
            *(self.state(e) for e in self.entity_types),
            *(self.inbox(h) for h in holders),
            self.ledger,
            self.interest,
            self.dlq,
        ]


def build_routes(agreements: Agreements, topics: Topics, root: Path | None = None) -> dict[str, list[Route]]:
    """Entity type -> every agreement's route for it (expired ones too: the ledger says why they do not deliver)."""
    routes: dict[str, list[Route]] = {}
    for agreement in agreements:
        for entity_type in agreement.grants:
            route = Route.build(agreement, entity_type, topics.inbox(agreement.holder), root)
            routes.setdefault(entity_type, []).append(route)
    return routes


def register_routes(registry: RegistryClient, routes: list[Route], level: str) -> None:
    """Register each live projection under its subject, refusing one that breaks the subject's compatibility.

    A new subject gets the catalog's compatibility level for inboxes first, so a later change to the agreement
    (granting a required field, revoking one) is checked against what the holder already receives.
    """
    done: set[tuple[str, str]] = set()
    for route in routes:
        text = json.dumps(route.schema, sort_keys=True)
        if (route.subject, text) in done:
            continue
        done.add((route.subject, text))
        latest = registry.latest(route.subject)
        if latest is None:
            registry.set_compatibility(route.subject, level)
        elif latest[2] != route.schema:
            ok, messages = registry.test_compatibility(route.subject, route.schema)
            if not ok:
                raise ConfigError(
                    f"agreement {route.agreement.id} changes what {route.holder} receives of {route.entity_type} "
                    f"in a way {route.subject} (version {latest[1]}, {level}) does not allow: "
                    f"{messages[0] if messages else 'incompatible'}",
                    hint="the holder's readers would break: agree the change with the holder first, then relax "
                    "that subject's compatibility in the registry",
                )
        registry.register(route.subject, route.schema)


def platform_subjects(topics: Topics, root: Path | None = None) -> dict[str, tuple[str, Schema]]:
    """Name -> (subject, schema) of the distributor's own platform records."""
    return {
        "ledger": (subject_for(topics.ledger), platform_schema("ledger_entry.avsc", root)),
        "interest": (subject_for(topics.interest), platform_schema("interest.avsc", root)),
    }
