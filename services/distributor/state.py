"""What the distributor must remember across restarts: the latest change per entity, and who registered interest.

Both live in Kafka, not in the process: ``state.<entity>`` holds the latest change event's bytes per key (read to
its end at start), ``interest`` holds every registration (read up to the distributor's committed offset at start,
so the registrations after it are processed again, fill included). The state is written only after the change's
inbox writes and ledger entries were acknowledged, so "the state has this version" means "this change was
distributed": a change replayed after a crash is recognised and not delivered twice.

Versions alone cannot tell a replay from a late change: an authority's older version can reach the change topic
after a newer one (two adapters, a retry), and it may be the only one a condition holder is entitled to (the move
out of its district). So each state record also names the change record it was written for (``onceonly.source``:
topic, partition, offset). An entity's changes share a partition and are distributed in offset order, so a record
at or before that offset was distributed; an older version after it is late and is distributed too (holders that
already hold the newer version skip it as stale), and the state then keeps the newer value with the later offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from onceonly.standard import unframe

Key = tuple[str, str]  # (entity_type, entity_key)
Source = tuple[str, int, int]  # (topic, partition, offset) of the change record a state record was written for
Seen = Literal["new", "distributed", "late"]
SOURCE_HEADER = "onceonly.source"
VERSION_HEADER = "onceonly.version"


@dataclass(frozen=True, slots=True)
class Stored:
    version: int
    value: bytes
    source: Source | None = None

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

    def put(self, entity_type: str, key: str, version: int, value: bytes, source: Source | None = None) -> None:
        self._latest[(entity_type, key)] = Stored(version, value, source)

    def drop(self, entity_type: str, key: str) -> None:
        self._latest.pop((entity_type, key), None)

    def seen(self, entity_type: str, key: str, version: int, source: Source | None = None) -> Seen:
        """Whether the change at ``source`` is new, was already distributed, or is an older version arriving late."""
        stored = self._latest.get((entity_type, key))
        if stored is None or version > stored.version:
            return "new"
        if version == stored.version or source is None:
            return "distributed"
        if stored.source is not None and stored.source[:2] == source[:2] and source[2] <= stored.source[2]:
            return "distributed"
        return "late"

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


def source_header(source: Source) -> tuple[str, bytes]:
    topic, partition, offset = source
    return SOURCE_HEADER, f"{topic}:{partition}:{offset}".encode()


def parse_source(value: str | bytes | None) -> Source | None:
    """The ``onceonly.source`` header's (topic, partition, offset); None when absent or unreadable."""
    try:
        text = value.decode() if isinstance(value, bytes) else value or ""
        topic, partition, offset = text.rsplit(":", 2)
        return topic, int(partition), int(offset)
    except ValueError:
        return None


HeaderValue = str | bytes | None


def state_headers(
    headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] | None,
) -> tuple[int | None, Source | None]:
    """The authority version (``onceonly.version``) and source a state record's headers carry, None if absent."""
    found = dict(headers.items() if isinstance(headers, Mapping) else headers or ())
    try:
        version = int(found.get(VERSION_HEADER) or "")
    except ValueError:
        version = None
    return version, parse_source(found.get(SOURCE_HEADER))
