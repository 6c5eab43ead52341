"""The housing fund's own data model, as the sink tests use it.

Its names, not ours: sfzhm = ID number, xm = name, dz = address, xzqh = district code, zt = status,
bbh = version, sjid = event id, gzbz = corrected flag, swrq = date of death.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from typing import Any

from connectors.sinks import Change

PERSON_DDL = """
CREATE TABLE gjj_grxx (
    sfzhm VARCHAR(18) PRIMARY KEY,
    xm VARCHAR(40) NOT NULL,
    dz VARCHAR(200),
    xzqh VARCHAR(6),
    zt VARCHAR(10) NOT NULL DEFAULT 'normal',
    bbh BIGINT,
    sjid VARCHAR(64),
    gzbz BOOLEAN,
    swrq DATE
)
"""

PERSON_MAPPING: dict[str, Any] = {
    "table": "gjj_grxx",
    "key_column": "sfzhm",
    "columns": {"name": "xm", "address": "dz", "district_code": "xzqh"},
    "version_column": "bbh",
    "event_id_column": "sjid",
    "correction_column": "gzbz",
    "deleted_column": "zt",
    "deleted_value": "cancelled",
    "active_value": "normal",
}

DEATH_MAPPING: dict[str, Any] = {
    "ends": "person",
    "key_field": "id_number",
    "columns": {"date_of_death": "swrq"},
    "deleted_value": "deceased",
}

OLD_ID = "110101800101001"  # 15 digits
NEW_ID = "110101198001010014"  # 18 digits
DIED = date(2024, 5, 1)


def person(
    key: str, version: int, op: str = "u", *, supersedes: str | None = None, correction: bool = False, **fields: Any
) -> Change:
    """A person change as the public security bureau records it."""
    after = None if op == "d" else {"name": f"name v{version}", "address": f"address v{version}", **fields}
    return Change(
        event_id=f"ev-{key}-{version}",
        event_type="identifier_upgraded" if supersedes else {"c": "created", "d": "moved_out"}.get(op, "updated"),
        op=op,  # type: ignore[arg-type]
        entity_type="person",
        entity_key=key,
        authority="public_security",
        authority_version=version,
        recorded_at=1_700_000_000_000 + version,
        correction=correction,
        supersedes_key=supersedes,
        before={"name": "before"} if op == "d" else None,
        after=after,
    )


def death(key: str, version: int = 1, op: str = "c") -> Change:
    """A death as the health commission records it (``op`` d retracts a certificate issued in error)."""
    record = {"id_number": key, "certificate_no": f"DC{key}", "date_of_death": DIED, "place": None}
    return Change(
        event_id=f"death-{key}-{version}",
        event_type="died" if op != "d" else "deleted",
        op=op,  # type: ignore[arg-type]
        entity_type="death",
        entity_key=f"DC{key}",
        authority="health",
        authority_version=version,
        recorded_at=1_700_000_000_000 + version,
        before=record if op == "d" else None,
        after=None if op == "d" else record,
    )


def at_once(worker: Callable[[int], None], count: int = 2) -> None:
    """Run ``worker(0)``, ``worker(1)``, ... in threads of their own at the same time, and wait for all."""
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
