"""The version guard and apply planning, as pure functions: no database, no broker."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.sinks import Change, Watermark, decide, guard, plan
from connectors.sinks.change import End
from connectors.sinks.plan import Step


def change(key: str, version: int, op: str = "u", supersedes: str | None = None) -> Change:
    after = None if op == "d" else {"v": version}
    return Change(f"e-{key}-{version}", "updated", op, "person", key, "ps", version, 0, False, supersedes, None, after)  # type: ignore[arg-type]


def test_newer_applies_equal_is_duplicate_older_is_stale() -> None:
    stored = Watermark(5, "e-5")
    assert decide(change("a", 6), stored).verdict == "apply"
    assert decide(change("a", 5), stored).verdict == "skipped_duplicate"
    assert decide(change("a", 4), stored).verdict == "skipped_stale"
    assert decide(change("a", 1), None).verdict == "apply"


def test_guard_judges_each_change_against_the_batch_so_far() -> None:
    decisions, changed = guard([change("a", 3), change("a", 5), change("a", 4), change("a", 5)], {})
    assert [d.verdict for d in decisions] == ["apply", "apply", "skipped_stale", "skipped_duplicate"]
    assert changed == {("person", "a"): Watermark(5, "e-a-5", batch_events=("e-a-3",))}


def test_a_redelivered_batch_is_recognised_as_applied_change_by_change() -> None:
    """The crash between the store's commit and the receipts: the batch comes again, every change in it was
    applied (also version 3, overtaken by 5 in the same transaction), and the guard says so (``repeat``)."""
    batch = [change("a", 3), change("a", 5), change("b", 1)]
    _, stored = guard(batch, {})
    again, changed = guard(batch, stored)
    assert [(d.verdict, d.repeat) for d in again] == [("skipped_duplicate", True)] * 3
    assert changed == {}
    # Not a repeat: an older change the store never took, another event with the stored version, a newer one.
    other = replace(change("a", 5), event_id="e-other")
    later, _ = guard([change("a", 4), other, change("a", 6)], stored)
    assert [(d.verdict, d.repeat) for d in later] == [
        ("skipped_stale", False),
        ("skipped_duplicate", False),
        ("apply", False),
    ]
    # A watermark written by a later transaction forgets the earlier one's events: only its own batch counts.
    _, moved_on = guard([change("a", 6)], stored)
    assert decide(change("a", 3), moved_on[("person", "a")]).repeat is False


def test_a_change_applied_to_an_old_key_before_its_upgrade_is_a_repeat_on_redelivery() -> None:
    old, new = "110101800101001", "110101198001010014"
    batch = [change(old, 3), change(new, 4, supersedes=old)]
    _, stored = guard(batch, {})
    assert stored[("person", old)].batch_events == (f"e-{old}-3",)
    again, _ = guard(batch, stored)
    assert [(d.verdict, d.repeat) for d in again] == [("skipped_duplicate", True)] * 2


def test_an_upgrade_retires_the_old_key_so_it_cannot_come_back() -> None:
    old, new = "110101800101001", "110101198001010014"
    stored = {("person", old): Watermark(3, "e-old-3")}
    decisions, changed = guard([change(new, 4, supersedes=old), change(old, 2), change(old, 9)], stored)
    assert [d.verdict for d in decisions] == ["apply", "skipped_stale", "skipped_stale"]
    assert changed[("person", old)] == Watermark(4, f"e-{new}-4", superseded_by=new)
    assert changed[("person", new)] == Watermark(4, f"e-{new}-4")


def test_a_delete_keeps_the_watermark_so_a_late_update_does_not_resurrect() -> None:
    decisions, _ = guard([change("a", 1), change("a", 3, "d"), change("a", 2)], {})
    assert [d.verdict for d in decisions] == ["apply", "apply", "skipped_stale"]


def test_plan_batches_distinct_entities_into_one_step() -> None:
    steps = plan([change(k, 1) for k in "abcdef"], "delete")
    assert [(s.action, len(s.changes)) for s in steps] == [("upsert", 6)]


def test_plan_starts_a_new_step_when_an_entity_comes_back() -> None:
    steps = plan([change("a", 1), change("b", 1), change("a", 2), change("b", 2, "d")], "mark")
    assert [(s.action, [c.authority_version for c in s.changes]) for s in steps] == [
        ("upsert", [1, 1]),
        ("upsert", [2]),
        ("mark", [2]),
    ]


def test_plan_keeps_an_upgrade_between_what_came_before_and_after() -> None:
    steps = plan([change("old", 1), change("new", 2, supersedes="old"), change("new", 3), change("x", 1)], "delete")
    assert [s.action for s in steps] == ["upsert", "rekey", "upsert"]
    assert [c.entity_key for c in steps[2].changes] == ["new", "x"]


def _run(steps: list[Step], store: dict[str, Any]) -> None:
    for step in steps:
        keys = [c.entity_key for c in step.changes]
        assert len(keys) == len(set(keys)), "a step touches an entity twice"
        for c in step.changes:
            if step.action == "upsert":
                store[c.entity_key] = dict(c.after or {})
            elif step.action == "delete":
                store.pop(c.entity_key, None)
            elif step.action == "mark":
                store[c.entity_key] = {**store.get(c.entity_key, {}), "deleted": True}


def _one_by_one(changes: list[Change]) -> dict[str, Any]:
    """The reference: apply in arrival order, each only if newer than anything seen for its key."""
    store: dict[str, Any] = {}
    newest: dict[str, int] = {}
    for c in changes:
        if c.authority_version <= newest.get(c.entity_key, 0):
            continue
        newest[c.entity_key] = c.authority_version
        if c.op == "d":
            store[c.entity_key] = {**store.get(c.entity_key, {}), "deleted": True}
        else:
            store[c.entity_key] = dict(c.after or {})
    return store


changes_strategy = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(1, 6), st.sampled_from(["u", "u", "u", "d"])), max_size=40
).map(lambda xs: [change(k, v, op) for k, v, op in xs])


@settings(max_examples=300, deadline=None)
@given(changes=changes_strategy, cuts=st.lists(st.integers(0, 40), max_size=5))
def test_batched_apply_equals_one_by_one_apply(changes: list[Change], cuts: list[int]) -> None:
    """Any split into batches, duplicates and versions out of order included, ends in the one-by-one state."""
    bounds = sorted({0, len(changes), *(c for c in cuts if c <= len(changes))})
    store: dict[str, Any] = {}
    marks: dict[tuple[str, str], Watermark] = {}
    for lo, hi in itertools.pairwise(bounds):
        decisions, changed = guard(changes[lo:hi], marks)
        _run(plan([d.change for d in decisions if d.verdict == "apply"], "mark"), store)
        marks.update(changed)
    assert store == _one_by_one(changes)


def test_a_death_ends_the_persons_watermark_until_it_is_retracted() -> None:
    died = replace(change("cert-1", 1), entity_type="death", ends=("person", "a"))
    retracted = replace(change("cert-1", 2, "d"), entity_type="death", ends=("person", "a"))
    stored = {("person", "a"): Watermark(4, "e-a-4")}
    after_death = [replace(change("a", v), recorded_at=1) for v in (5, 4, 6)]
    decisions, changed = guard([died, after_death[0], after_death[1], retracted, after_death[2]], stored)
    assert [d.verdict for d in decisions] == ["apply", "skipped_stale", "skipped_duplicate", "apply", "apply"]
    assert "ended by event e-cert-1-1" in str(decisions[1].reason)
    assert changed[("person", "a")] == Watermark(6, "e-a-6")


def test_plan_keeps_a_death_between_the_persons_changes() -> None:
    died = replace(change("cert-1", 1), entity_type="death", ends=("person", "a"))
    steps = plan([change("a", 1), change("b", 1), died, change("b", 2)], "mark")
    assert [(s.action, [c.entity_key for c in s.changes]) for s in steps] == [
        ("upsert", ["a", "b"]),
        ("mark", ["cert-1"]),
        ("upsert", ["b"]),
    ]


def test_an_upgrade_re_keys_a_person_a_death_ended_and_keeps_them_ended() -> None:
    end = End("death-1", "death", -1)  # the upgrade was recorded after the death: re-keying is not reviving
    stored = {("person", "old"): Watermark(3, "e-old-3", end=end)}
    decisions, changed = guard([change("new", 4, supersedes="old"), change("new", 5)], stored)
    assert [d.verdict for d in decisions] == ["apply", "skipped_stale"]
    assert decisions[0].change.kept_end == end
    assert changed[("person", "new")] == Watermark(4, "e-new-4", end=end)
    assert changed[("person", "old")].superseded_by == "new"


def test_a_change_recorded_before_the_death_lands_kept_ended_and_one_after_it_does_not() -> None:
    end = End("death-1", "death", 1_700_000_000_000)
    stored = {("person", "a"): Watermark(1, "e-a-1", end=end)}
    early = replace(change("a", 2), recorded_at=end.recorded_at - 1)
    late = replace(change("a", 3), recorded_at=end.recorded_at + 1)
    decisions, changed = guard([early, late], stored)
    assert [(d.verdict, d.change.kept_end) for d in decisions] == [("apply", end), ("skipped_stale", None)]
    assert changed[("person", "a")] == Watermark(2, "e-a-2", end=end)
    assert plan([decisions[0].change], "delete")[0].action == "purge"
    assert plan([decisions[0].change], "mark")[0].action == "upsert"


def test_a_death_for_a_re_keyed_person_ends_the_new_key() -> None:
    stored = {("person", "old"): Watermark(3, "e-new-4", superseded_by="new"), ("person", "new"): Watermark(4, "e")}
    died = replace(change("cert-1", 1), entity_type="death", ends=("person", "old"))
    decisions, changed = guard([died], stored)
    assert decisions[0].change.ends == ("person", "new")
    assert changed[("person", "new")].ended_by == "e-cert-1-1"
    assert ("person", "old") not in changed
