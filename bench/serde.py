"""Encode+decode speed of ``onceonly.standard.Serde`` next to raw fastavro on the same record, same run.

Target: the serde keeps at least 0.8 of raw fastavro's records/s (framing, caching and error handling cost
little). The registry is answered in-process here because this measures the hot path, not HTTP: after the
first record every schema lookup is a cache hit.

    python bench/serde.py [--records 50000]
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import time
from typing import Any

import fastavro

from onceonly.standard import Serde, change_schema, event_id

ID = "11010519491231002X"


class InProcessRegistry:
    """Answers the serde's two registry questions from a dict (the bench measures encode/decode, not HTTP)."""

    def __init__(self) -> None:
        self.schemas: dict[int, dict[str, Any]] = {}

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        self.schemas[len(self.schemas) + 1] = schema
        return len(self.schemas)

    def get_schema(self, schema_id: int) -> dict[str, Any]:
        return self.schemas[schema_id]


def person_change(i: int) -> dict[str, Any]:
    return {
        "event_id": event_id("public_security", "person", ID, i + 1),
        "event_type": "moved_in",
        "op": "u",
        "entity_type": "person",
        "entity_key": ID,
        "authority": "public_security",
        "authority_version": i + 1,
        "recorded_at": 1_700_000_000_000 + i,
        "restrictions": [],
        "source": {"connector": "outbox", "department": "public_security", "table": "outbox", "position": str(i)},
        "ts_ms": 1_700_000_000_000 + i,
        "before": None,
        "after": {
            "id_number": ID,
            "name": "王芳",
            "sex": "2",
            "birth_date": datetime.date(1949, 12, 31),
            "household_id": "110105000123",
            "district_code": "110105",
            "address": "北京市朝阳区建国路1号院3号楼2单元101",
            "residence_type": "registered",
            "status": "active",
        },
    }


def raw_rate(records: list[dict[str, Any]], schema: dict[str, Any]) -> float:
    parsed = fastavro.parse_schema(schema)
    start = time.perf_counter()
    for r in records:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, r)
        fastavro.schemaless_reader(io.BytesIO(out.getvalue()), parsed, None)
    return len(records) / (time.perf_counter() - start)


def serde_rate(records: list[dict[str, Any]], schema: dict[str, Any]) -> float:
    serde = Serde(InProcessRegistry())
    start = time.perf_counter()
    for r in records:
        serde.decode(serde.encode(schema, "change.person-value", r))
    return len(records) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of N for each side, alternating")
    args = parser.parse_args()
    schema = change_schema("person")
    records = [person_change(i) for i in range(args.records)]
    raw, ours = 0.0, 0.0
    for _ in range(args.rounds):
        raw = max(raw, raw_rate(records, schema))
        ours = max(ours, serde_rate(records, schema))
    result = {
        "bench": "serde",
        "records": args.records,
        "raw_fastavro_per_s": round(raw),
        "serde_per_s": round(ours),
        "ratio": round(ours / raw, 3),
        "target": 0.8,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
