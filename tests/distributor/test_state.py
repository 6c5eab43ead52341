"""The distributor's memory of what it distributed: a replay is told from a late older version by offset."""

from __future__ import annotations

from services.distributor.state import StateView, parse_source, source_header, state_headers

TOPIC = "change.person"


def test_versions_and_offsets_decide_new_distributed_or_late() -> None:
    view = StateView()
    assert view.seen("person", "k", 1, (TOPIC, 0, 10)) == "new"
    view.put("person", "k", 3, b"v3", (TOPIC, 0, 12))
    assert view.seen("person", "k", 4, (TOPIC, 0, 13)) == "new"
    assert view.seen("person", "k", 3, (TOPIC, 0, 14)) == "distributed"  # the same version published again
    assert view.seen("person", "k", 2, (TOPIC, 0, 11)) == "distributed"  # before the state's record: a replay
    assert view.seen("person", "k", 2, (TOPIC, 0, 12)) == "distributed"
    assert view.seen("person", "k", 2, (TOPIC, 0, 13)) == "late"  # after it: arrived late
    assert view.seen("person", "k", 2, (TOPIC, 1, 5)) == "late"  # another partition: cannot tell, deliver again
    assert view.seen("person", "k", 2) == "distributed"  # no source: versions alone, as before
    assert view.seen("person", "other", 1, (TOPIC, 0, 1)) == "new"


def test_a_state_record_without_a_source_redelivers_rather_than_drops() -> None:
    """State written before sources were recorded: an older version may be late, and a repeat is harmless."""
    view = StateView()
    view.put("person", "k", 3, b"v3")
    assert view.seen("person", "k", 2, (TOPIC, 0, 1)) == "late"


def test_the_source_header_round_trips_and_bad_values_are_none() -> None:
    name, value = source_header(("onceonly.change.person", 2, 41))
    assert name == "onceonly.source"
    assert parse_source(value) == ("onceonly.change.person", 2, 41)
    for bad in (None, b"", b"topic:1", b"topic:x:3", b"\xff"):
        assert parse_source(bad) is None


def test_state_headers_read_version_and_source_from_either_header_shape() -> None:
    pairs = [("onceonly.version", b"7"), source_header((TOPIC, 0, 9))]
    assert state_headers(pairs) == state_headers(dict(pairs)) == (7, (TOPIC, 0, 9))
    assert state_headers(None) == (None, None)
    assert state_headers([("onceonly.version", b"seven")]) == (None, None)
