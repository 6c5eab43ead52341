"""The authorities' truth: the current record and version of every entity, and the change events that moved it.

The demo checks each holder against this, projected through the holder's agreement, so "converged" means
field-for-field equal to what the law says the holder may know.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from onceonly.catalog import load_departments
from onceonly.standard import event_id

Record = dict[str, Any]


@dataclass
class Entity:
    version: int
    record: Record | None  # None once deleted


@dataclass
class Truth:
    """Per entity type and key: the authority's current version and record."""

    entities: dict[str, dict[str, Entity]] = field(default_factory=dict)
    restrictions: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def current(self, entity_type: str, key: str) -> Record | None:
        entity = self.entities.get(entity_type, {}).get(key)
        return entity.record if entity else None

    def change(
        self,
        entity_type: str,
        key: str,
        after: Record | None,
        event_type: str,
        *,
        correction: bool = False,
        supersedes: str | None = None,
    ) -> Record:
        """Record a change at the authority and return its change event (envelope)."""
        table = self.entities.setdefault(entity_type, {})
        previous = table.pop(supersedes, None) if supersedes else table.get(key)
        version = (previous.version if previous else 0) + 1
        before = previous.record if previous else None
        op = "d" if after is None else ("c" if before is None else "u")
        table[key] = Entity(version, dict(after) if after is not None else None)
        authority = load_departments().authority_of(entity_type).code
        now = int(time.time() * 1000)
        return {
            "event_id": event_id(authority, entity_type, key, version),
            "event_type": event_type,
            "op": op,
            "entity_type": entity_type,
            "entity_key": key,
            "authority": authority,
            "authority_version": version,
            "valid_from": now,
            "recorded_at": now,
            "correction": correction,
            "supersedes_key": supersedes,
            "legal_basis": None,
            "restrictions": list(self.restrictions.get((entity_type, key), [])),
            "source": None,
            "ts_ms": now,
            "before": dict(before) if before else None,
            "after": dict(after) if after is not None else None,
        }

    def live(self, entity_type: str) -> dict[str, Record]:
        """Every entity of a type that exists now."""
        return {k: e.record for k, e in self.entities.get(entity_type, {}).items() if e.record is not None}
