"""Across the real broker into SQLite and PostgreSQL: every case of the issue ends in exactly the expected table,
and every record that cannot be applied is a dead letter with its reason (never a silent drop)."""

from __future__ import annotations

from collections import Counter

from subscriber_kit import (
    DIED,
    HOLDER,
    SOURCES,
    Broker,
    death_change,
    person_change,
    query,
    running,
    subscriber_config,
    table,
    wait_until,
)

from onceonly.standard import platform_schema

OLD_ID, NEW_ID = "110101800101001", "110101198001010014"


def test_duplicates_stale_poison_upgrade_correction_death(store: str, broker: Broker, engine: str) -> None:
    created = [person_change(k, 1, "c") for k in ("A", OLD_ID, "C", "D")]
    late_copy = person_change(OLD_ID, 1, "c")
    malformed = {**person_change("M", 2), "after": None}  # an update without data: decodable, not applicable
    poison = person_change("P", 1, "c", district_code="000000")  # the fund's CHECK constraint refuses it
    with running(subscriber_config(store, engine=engine), broker.settings, broker.codec) as worker:
        broker.publish(created)
        wait_until(lambda: len(table(store)) == 4, what="the first four people")
        broker.publish(
            [
                person_change("A", 3, district_code="110101"),
                person_change("A", 2),  # older than what is stored
                person_change("A", 3, district_code="110101"),  # the same event again
                person_change(NEW_ID, 2, supersedes=OLD_ID),  # 15 -> 18 digits
                late_copy,
                person_change("C", 2, correction=True, name="name corrected"),
                death_change("D"),  # from the health commission, on change.death
                poison,
                malformed,
            ]
        )
        other_schema = broker.codec.encode(platform_schema("receipt.avsc"), "other-value", _receipt_like())
        broker.publish_raw(b"X", other_schema)
        broker.publish_raw(b"P1", b"\x00\x7f\xff\xff\xff this is not avro")  # a schema id nobody registered
        broker.publish_raw(b"P2", b"not even framed")
        broker.publish_raw(b"P3", None)  # a tombstone
        wait_until(lambda: sum(worker.stats.values()) - worker.stats["retries"] >= 17, what="17 outcomes")

    assert table(store) == [
        (NEW_ID, "name v2", "address v2", None, "normal", 2, False, None),
        ("A", "name v3", "address v3", "110101", "normal", 3, False, None),
        ("C", "name corrected", "address v2", None, "normal", 2, True, None),
        ("D", "name v1", "address v1", None, "deceased", 1, False, str(DIED)),
    ]
    applied = query(store, "SELECT sjid FROM apply_log")
    assert len(applied) == 8 and len(set(applied)) == 8, "eight changes, each applied exactly once"

    receipts = broker.receipts(17, settle=0.5)
    outcomes = Counter(r["outcome"] for r in receipts)
    assert (len(receipts), outcomes["applied"], outcomes["dead_lettered"]) == (17, 8, 6)
    assert (outcomes["skipped_stale"], outcomes["skipped_duplicate"]) in ((2, 1), (1, 2))
    # The late copy of the 15-digit record is a duplicate or, once the upgrade is in, stale: never a second person.
    late = sorted(r["outcome"] for r in receipts if r["event_id"] == late_copy["event_id"])
    assert late in (["applied", "skipped_duplicate"], ["applied", "skipped_stale"])
    assert {r["holder"] for r in receipts} == {HOLDER}

    letters = {m.key(): m for m in broker.read(f"dlq.{HOLDER}", 6, settle=0.5)}
    assert sorted(letters) == [b"M", b"P", b"P1", b"P2", b"P3", b"X"]
    why = {k: {h: v.decode() for h, v in m.headers()} for k, m in letters.items()}
    for key, headers in why.items():
        assert headers["__connect.errors.topic"] in [broker.settings.topic(t) for t in SOURCES], key
        assert int(headers["__connect.errors.partition"]) in (0, 1, 2) and int(headers["__connect.errors.offset"]) >= 0
        assert headers["__connect.errors.exception.message"], f"{key!r} has no reason"
        assert headers["onceonly.holder"] == HOLDER
    assert why[b"P"]["__connect.errors.exception.class.name"].endswith(("IntegrityError", "CheckViolation"))
    assert why[b"P"]["__connect.errors.stage"] == "TASK_PUT"
    assert why[b"P1"]["__connect.errors.stage"] == "VALUE_CONVERTER"
    assert why[b"P"]["__connect.errors.connector.name"] == f"subscriber.{HOLDER}"
    assert why[b"P"]["onceonly.event_id"] == poison["event_id"]
    assert why[b"P1"]["__connect.errors.exception.class.name"] == "onceonly.standard.errors.UnknownSchemaId"
    assert why[b"P1"]["onceonly.schema_id"] == str(0x7FFFFFFF) and why[b"P1"]["onceonly.event_id"] == ""
    assert why[b"P2"]["__connect.errors.exception.class.name"] == "onceonly.standard.errors.BadMagicByte"
    assert why[b"P2"]["onceonly.schema_id"] == ""
    assert why[b"P3"]["__connect.errors.exception.class.name"] == "onceonly.standard.errors.EmptyPayload"
    assert why[b"M"]["__connect.errors.exception.class.name"] == "connectors.sinks.errors.MalformedChange"
    assert why[b"M"]["onceonly.event_id"] == malformed["event_id"]
    assert "no 'op' field" in why[b"X"]["__connect.errors.exception.message"]
    assert letters[b"P2"].value() == b"not even framed", "the original bytes"
    assert letters[b"P3"].value() is None, "a tombstone stays a tombstone"


def _receipt_like() -> dict[str, object]:
    """A valid record of another schema (a receipt) where a change belongs."""
    return {
        "event_id": "e",
        "holder": "tax",
        "outcome": "applied",
        "entity_type": "person",
        "entity_key": "X",
        "authority_version": 1,
        "reason": None,
        "recorded_at": None,
        "applied_at": 0,
    }
