"""The distributor's memory of what it distributed: a repeat is told from a late older version by the versions
it skipped (its floor and gaps), and that memory survives a restart through the state record's headers."""

from __future__ import annotations

from services.distributor.state import DISTRIBUTED_HEADER, StateView, state_headers
from services.distributor.versions import MAX_GAPS, Distributed


def test_a_jump_leaves_a_gap_a_late_version_fills_it_and_a_repeat_is_skipped() -> None:
    view = StateView()
    assert view.seen("person", "k", 1) == "new"
    view.advance("person", "k", 1, b"v1")
    view.advance("person", "k", 2, b"v2")
    assert view.seen("person", "k", 2) == "distributed"  # the same version again (a replay, a second publish)
    assert view.seen("person", "k", 1) == "distributed"  # an older one it distributed in its turn
    stored = view.advance("person", "k", 5, b"v5")
    assert stored.distributed == Distributed(1, ((3, 4),))
    assert [view.seen("person", "k", v) for v in (1, 2, 3, 4, 5, 6)] == [
        "distributed", "distributed", "late", "late", "distributed", "new",
    ]  # fmt: skip
    stored = view.fill("person", "k", 3)
    assert (stored.version, stored.value, stored.distributed) == (5, b"v5", Distributed(1, ((4, 4),)))
    assert view.seen("person", "k", 3) == "distributed"  # the late one, again: now a repeat
    assert view.seen("person", "k", 4) == "late"


def test_versions_below_the_first_one_seen_are_late_and_lower_the_floor() -> None:
    view = StateView()
    view.advance("person", "k", 4, b"v4")  # v1..v3 never came (yet)
    assert view.seen("person", "k", 2) == "late"
    assert view.fill("person", "k", 2).distributed == Distributed(2, ((3, 3),))
    assert [view.seen("person", "k", v) for v in (1, 2, 3)] == ["late", "distributed", "late"]


def test_state_read_back_without_the_header_treats_every_older_version_as_late() -> None:
    """State written before the header existed: a repeat delivered again is harmless, a late change lost is not."""
    view = StateView()
    view.put("person", "k", 3, b"v3", None)
    assert view.seen("person", "k", 2) == "late"
    assert view.seen("person", "k", 3) == "distributed"


def test_the_headers_round_trip_and_bad_values_mean_unknown() -> None:
    view = StateView()
    view.advance("person", "k", 1, b"v1")
    stored = view.advance("person", "k", 9, b"v9")
    headers = stored.headers()
    assert state_headers(headers) == state_headers(dict(headers)) == (9, Distributed(1, ((2, 8),)))
    assert state_headers(None) == (None, None)
    for bad in (b"", b"1", b"x;", b"1;2", b"1;2:x", b"\xff"):
        assert state_headers([("onceonly.version", b"3"), (DISTRIBUTED_HEADER, bad)]) == (3, None), bad
    assert Distributed.parse(Distributed(-5, ((-3, -2),)).encode()) == Distributed(-5, ((-3, -2),))


def test_gaps_are_capped_by_merging_the_oldest_which_can_only_make_a_repeat_look_late() -> None:
    d = Distributed(0)
    latest = 0
    for new in range(2, 2 * (MAX_GAPS + 5), 2):  # a global sequence: every change jumps one version
        d, latest = d.advanced(latest, new), new
    assert len(d.gaps) == MAX_GAPS
    assert all(not d.covers(v) for v in range(1, latest, 2))  # every skipped version is still late
    assert not d.covers(2)  # ...and the merged range made a distributed one look late: at worst a second delivery
    assert d.covers(latest - 2)
