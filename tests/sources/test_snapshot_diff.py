"""The pure core of the snapshot source: creates, updates, deletes and versions, with no I/O."""

from __future__ import annotations

from datetime import date

from connectors.sources import Emit, Known, diff
from connectors.sources.snapshot_diff import digest, too_many_deletes


def known(records: dict[str, dict[str, object]], version: int = 1) -> dict[str, Known]:
    return {k: Known(version, digest(r)) for k, r in records.items()}


def ops(emits: list[Emit]) -> list[tuple[str, str, int]]:
    return [(e.op, e.key, e.version) for e in emits]


A = {"name": "甲", "born": date(1980, 1, 1)}
B = {"name": "乙", "born": date(1981, 1, 1)}


def test_first_run_creates_everything() -> None:
    assert ops(diff({"a": A, "b": B}, {})) == [("c", "a", 1), ("c", "b", 1)]
    assert ops(diff({"a": A}, {}, first_op="r")) == [("r", "a", 1)]


def test_same_input_in_any_order_emits_nothing() -> None:
    last = known({"a": A, "b": B})
    assert diff({"b": dict(reversed(list(B.items()))), "a": A}, last) == []


def test_update_delete_and_create_bump_versions() -> None:
    last = known({"a": A, "b": B}, version=4)
    emits = diff({"a": {**A, "name": "甲甲"}, "c": B}, last)
    assert ops(emits) == [("u", "a", 5), ("d", "b", 5), ("c", "c", 1)]
    assert emits[1].after is None and emits[0].after == {**A, "name": "甲甲"}


def test_a_key_back_after_its_delete_continues_its_versions() -> None:
    last = {"a": Known(6, None, deleted=True)}
    assert ops(diff({"a": A}, last)) == [("c", "a", 7)]
    assert diff({}, last) == []  # deleted stays deleted


def test_an_unreadable_row_is_not_a_delete() -> None:
    assert diff({}, known({"a": A}), unreadable={"a"}) == []


def test_a_mass_delete_is_refused() -> None:
    last = known({str(i): {"n": i} for i in range(20)})
    assert too_many_deletes(diff({}, last), last, 0.5) is not None
    few = {str(i): {"n": i} for i in range(15)}
    assert too_many_deletes(diff(few, last), last, 0.5) is None
    assert too_many_deletes(diff({}, known({"a": A})), known({"a": A}), 0.5) is None  # tiny tables are trusted
