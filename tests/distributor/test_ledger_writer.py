"""The ledger's template fast path writes exactly what ``Chain.append`` + ``Serde.encode`` write, entry by entry."""

from __future__ import annotations

import copy
from typing import Any

from onceonly.standard import Serde, platform_schema
from services.distributor.ledger import Chain, verify
from services.distributor.ledger_writer import LedgerWriter


class InProcessRegistry:
    def __init__(self) -> None:
        self.schemas: dict[int, dict[str, Any]] = {}

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        self.schemas[len(self.schemas) + 1] = schema
        return len(self.schemas)

    def get_schema(self, schema_id: int) -> dict[str, Any]:
        return self.schemas[schema_id]


def entry(i: int, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "change",
        "outcome": "delivered",
        "reason": None,
        "event_id": f"6f1c5c9e-5d7b-5f3e-9a0b-{i:012d}",
        "change_event_id": f"6f1c5c9e-5d7b-5f3e-9a0b-{i:012d}",
        "holder": ("tax", "hrss", "health")[i % 3],
        "agreement_id": "tax-2024-007",
        "purpose": "taxpayer registration",
        "legal_basis": "Tax Collection Law",
        "entity_type": "person",
        "entity_key": f"1101051949123100{i % 100:02d}",
        "authority_version": i,
        "fields": ["id_number", "name", "address"],
        "withheld_fields": [],
        "inbox": "inbox.tax",
        "at": 1_760_000_000_000 + i // 7,
    }
    return base | overrides


def odd_entries() -> list[dict[str, Any]]:
    """Shapes and values the templates must escape or refuse: %, quotes, non-ASCII, nulls, big numbers."""
    return [
        entry(1),
        entry(2, outcome="withheld", reason='address_secret: 100% "withheld" 地址', withheld_fields=["address"]),
        entry(3, agreement_id=None, purpose=None, legal_basis=None, inbox=None, fields=[], outcome="withheld"),
        entry(4, kind="fill", event_id="fill-%s-%d", entity_key='王芳 "\\ \n %b'),
        entry(5, authority_version=2**40, at=0),
        entry(6, fields=["%", "x" * 200]),
        entry(7, fields=("id_number", "name"), withheld_fields=("address",)),  # tuples, as the distributor passes
        entry(8, extra="unknown field"),  # not an entry of the schema's shape: the reference path
    ]


def test_templates_write_the_reference_bytes_and_chain() -> None:
    schema = platform_schema("ledger_entry.avsc")
    serde = Serde(InProcessRegistry())
    writer = LedgerWriter(serde, "audit.deliveries-value", schema)
    fast, slow = Chain(), Chain()
    items = [entry(i) for i in range(1, 400)] + odd_entries() * 3
    written = []
    for fields in items:
        value = writer.append(fast, copy.deepcopy(fields))
        reference = slow.append(copy.deepcopy(fields))
        assert value == serde.encode(schema, "audit.deliveries-value", reference), fields
        assert (fast.seq, fast.head) == (slow.seq, slow.head)
        if "extra" not in fields:  # an unknown field is hashed but not written: that entry cannot verify
            written.append(serde.decode(value).record)
    assert verify([(str(i), e) for i, e in enumerate(written[:405])]).seq == 405
    assert any(t is not None for t in writer._templates.values())


def test_a_chain_continued_after_a_restart_stays_verifiable() -> None:
    schema = platform_schema("ledger_entry.avsc")
    serde = Serde(InProcessRegistry())
    chain = Chain()
    before = [serde.decode(LedgerWriter(serde, "s", schema).append(chain, entry(i))).record for i in range(1, 4)]
    resumed = Chain.after(before[-1])
    writer = LedgerWriter(serde, "s", schema)  # a new process: templates are made again
    after = [serde.decode(writer.append(resumed, entry(i))).record for i in range(4, 9)]
    assert verify([(str(e["seq"]), e) for e in [*before, *after]]).seq == 8
