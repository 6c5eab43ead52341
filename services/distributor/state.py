"""What the distributor must remember across restarts: the latest change per entity, and who registered interest.

Both live in Kafka, not in the process: ``state.<entity>`` holds the latest change event's bytes per key (read to
its end at start), ``interest`` holds every registration (read up to the distributor's committed offset at start,
so the registrations after it are processed again, fill included). The state is written only after the change's
inbox writes and ledger entries were acknowledged, so "the state has this version" means "this change was
distributed": a change replayed after a crash is recognised and not delivered twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from onceonly.standard import unframe

Key = tuple[str, str]  # (entity_type, entity_key)


@dataclass(frozen=True, slots=True)
class Stored:
    version: int
    value: bytes

    @property
    def schema_id(self) -> int:
        return unframe(self.value)[0]


class StateView:
    """Latest change bytes per entity, in memory (about the size of one framed change per entity)."""

    def __init__(self) -> None:
        self._latest: dict[Key, Stored] = {}

    def __len__(self) -> int:
        return len(self._latest)

    def get(self, entity_type: str, key: str) -> Stored | None:
        return self._latest.get((entity_type, key))

    def put(self, entity_type: str, key: str, version: int, value: bytes) -> None:
        self._latest[(entity_type, key)] = Stored(version, value)

    def drop(self, entity_type: str, key: str) -> None:
        self._latest.pop((entity_type, key), None)

    def seen(self, entity_type: str, key: str, version: int) -> bool:
        """True when this version (or a newer one) of the entity was already distributed."""
        stored = self._latest.get((entity_type, key))
        return stored is not None and stored.version >= version

    def schema_ids(self) -> set[int]:
        return {s.schema_id for s in self._latest.values()}


class InterestSet:
    """Registered interest: (holder, entity_type, entity_key). A key's interest covers every entity type under it."""

    def __init__(self) -> None:
        self._entries: set[tuple[str, str, str]] = set()
        self._by_key: dict[str, set[tuple[str, str]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        return iter(sorted(self._entries))

    def add(self, holder: str, entity_type: str, key: str) -> bool:
        if (holder, entity_type, key) in self._entries:
            return False
        self._entries.add((holder, entity_type, key))
        self._by_key.setdefault(key, set()).add((holder, entity_type))
        return True

    def discard(self, holder: str, entity_type: str, key: str) -> bool:
        if (holder, entity_type, key) not in self._entries:
            return False
        self._entries.discard((holder, entity_type, key))
        left = self._by_key.get(key, set())
        left.discard((holder, entity_type))
        if not left:
            self._by_key.pop(key, None)
        return True

    def apply(self, record: Mapping[str, Any]) -> bool:
        """Fold one ``interest`` record; True when it changed anything."""
        entry = (str(record["holder"]), str(record["entity_type"]), str(record["entity_key"]))
        return self.add(*entry) if record["action"] == "register" else self.discard(*entry)

    def interested(self, holder: str, *keys: str | None) -> bool:
        return any(key is not None and any(h == holder for h, _ in self._by_key.get(key, ())) for key in keys)

    def registrations(self, key: str) -> list[tuple[str, str]]:
        """(holder, entity_type) of every registration on ``key``."""
        return sorted(self._by_key.get(key, ()))


def interest_key(holder: str, entity_type: str, entity_key: str) -> bytes:
    """The ``interest`` topic's key: one per holder and entity, so compaction keeps each holder's latest word."""
    return f"{holder}/{entity_type}/{entity_key}".encode()
