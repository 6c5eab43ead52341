"""Reading the delivery ledger for auditors and citizens: who received what of an entity, and is the chain whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde, SerdeError
from services.distributor.ledger import LedgerBroken, Verified, read_jsonl, verify
from services.distributor.reading import read_to_end, whole_topics


def ledger_entries(settings: Settings, serde: Serde | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(offset N, entry)`` of the whole ``audit.deliveries`` topic, in order."""
    serde = serde or Serde(RegistryClient(settings.registry_url))
    topic = settings.topic("audit.deliveries")
    for message in read_to_end(settings, whole_topics(settings, [topic])):
        where = f"offset {message.offset()}"
        try:
            yield where, dict(serde.decode(message.value()).record)
        except SerdeError as e:
            raise LedgerBroken(f"ledger broken: the record at {topic} {where} is not a ledger entry: {e}") from e


def verify_ledger(settings: Settings, *, copy: Path | None = None, head: str | None = None) -> Verified:
    """Verify the ledger topic, or a JSONL copy of it."""
    return verify(read_jsonl(copy) if copy else ledger_entries(settings), head=head)


def matching(
    entries: Iterator[tuple[str, dict[str, Any]]],
    *,
    holder: str | None = None,
    entity_key: str | None = None,
    event_id: str | None = None,
) -> Iterator[dict[str, Any]]:
    for _, entry in entries:
        if holder and entry.get("holder") != holder:
            continue
        if entity_key and entry.get("entity_key") != entity_key:
            continue
        if event_id and event_id not in (entry.get("event_id"), entry.get("change_event_id")):
            continue
        yield entry
