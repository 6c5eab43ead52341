"""What the distributor must remember across restarts: the latest change per entity, and who registered interest.

Both live in Kafka, not in the process: ``state.<entity>`` holds the latest change event's bytes per key (read to
its end at start), ``interest`` holds every registration (read up to the distributor's committed offset at start,
so the registrations after it are processed again, fill included). The state is written only after the change's
inbox writes and ledger entries were acknowledged, so "the state has this version" means "this change was
distributed": a change replayed after a crash is recognised and not delivered twice.

A change's older version can arrive after a newer one; which versions were distributed is kept next to the latest
(``services.distributor.versions``), so a late one is distributed and a repeat is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from onceonly.standard import unframe
from services.distributor.versions import Distributed

Key = tuple[str, str]  # (entity_type, entity_key)
Seen = Literal["new", "distributed", "late"]
VERSION_HEADER = "onceonly.version"
DISTRIBUTED_HEADER = "onceonly.distributed"


@dataclass(frozen=True, slots=True)
class Stored:
    version: int
    value: bytes
    distributed: Distributed

    def headers(self) -> list[tuple[str, bytes]]:
        """The state record's headers: the latest version, and which versions below it were distributed."""
        return [(VERSION_HEADER, str(self.version).encode()), (DISTRIBUTED_HEADER, self.distributed.encode())]

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

    def put(self, entity_type: str, key: str, version: int, value: bytes, distributed: Distributed | None) -> None:
        """A state record as read back (without its ``distributed`` header: nothing below it is known)."""
        self._latest[(entity_type, key)] = Stored(version, value, distributed or Distributed(version))

    def advance(self, entity_type: str, key: str, version: int, value: bytes) -> Stored:
        """A new (newer) version was distributed."""
        before = self._latest.get((entity_type, key))
        distributed = before.distributed.advanced(before.version, version) if before else Distributed(version)
        stored = Stored(version, value, distributed)
        self._latest[(entity_type, key)] = stored
        return stored

    def fill(self, entity_type: str, key: str, version: int) -> Stored:
        """A late (older) version was distributed: the latest stays, the gap it was in closes."""
        before = self._latest[(entity_type, key)]
        stored = self._latest[(entity_type, key)] = Stored(
            before.version, before.value, before.distributed.filled(version)
        )
        return stored

    def drop(self, entity_type: str, key: str) -> None:
        self._latest.pop((entity_type, key), None)

    def seen(self, entity_type: str, key: str, version: int) -> Seen:
        """Whether ``version`` is new, was already distributed, or is an older version arriving late."""
        stored = self._latest.get((entity_type, key))
        if stored is None or version > stored.version:
            return "new"
        if version == stored.version or stored.distributed.covers(version):
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


HeaderValue = str | bytes | None


def state_headers(
    headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] | None,
) -> tuple[int | None, Distributed | None]:
    """The latest version (``onceonly.version``) and the distributed versions a state record's headers carry."""
    found = dict(headers.items() if isinstance(headers, Mapping) else headers or ())
    try:
        version = int(found.get(VERSION_HEADER) or "")
    except ValueError:
        version = None
    return version, Distributed.parse(found.get(DISTRIBUTED_HEADER))
