"""The files sink: an append-only log that is its own watermark, also after a crash tore its last line."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from sink_kit import death, person

from connectors.sinks import FileSink, FileSinkConfig, TransientSinkError
from onceonly.errors import ConfigError


def open_sink(tmp_path: Path, fmt: str = "jsonl", pattern: str = "{entity_type}", **extra: Any) -> FileSink:
    config = FileSinkConfig(kind="files", path=str(tmp_path / "out" / f"{pattern}.{fmt}"), format=fmt, **extra)
    sink = FileSink(config)
    sink.open()
    return sink


def test_jsonl_appends_applied_changes_and_remembers_them_after_reopen(tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    first = sink.apply([person("1", 1, "c"), person("1", 2), person("1", 2), person("2", 1, "c")])
    sink.close()
    again = open_sink(tmp_path).apply([person("1", 2), person("1", 1, "c"), person("1", 3, "d")])
    assert [r.outcome for r in first] == ["applied", "applied", "skipped_duplicate", "applied"]
    assert [r.outcome for r in again] == ["skipped_duplicate", "skipped_stale", "applied"]
    lines = [json.loads(x) for x in (tmp_path / "out" / "person.jsonl").read_text().splitlines()]
    assert [(x["entity_key"], x["authority_version"], x["op"]) for x in lines] == [
        ("1", 1, "c"),
        ("1", 2, "u"),
        ("2", 1, "c"),
        ("1", 3, "d"),
    ]
    assert lines[0]["data"] == {"name": "name v1", "address": "address v1"}


def test_a_torn_last_line_is_dropped_and_that_change_is_written_again(tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    sink.apply([person("1", 1, "c"), person("2", 1, "c")])
    sink.close()
    path = tmp_path / "out" / "person.jsonl"
    path.write_text(path.read_text()[:-9])  # a crash in the middle of the second line
    results = open_sink(tmp_path).apply([person("1", 1, "c"), person("2", 1, "c")])
    assert [r.outcome for r in results] == ["skipped_duplicate", "applied"]
    assert [json.loads(x)["entity_key"] for x in path.read_text().splitlines()] == ["1", "2"]


def test_csv_has_fixed_columns_in_the_departments_names(tmp_path: Path) -> None:
    fields = {"person": {"name": "xm", "address": "dz"}}
    sink = open_sink(tmp_path, "csv", fields=fields)
    sink.apply([person("1", 1, "c", address='line one\nline "two"'), person("1", 2)])
    sink.close()
    path = tmp_path / "out" / "person.csv"
    with path.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["entity_key"], r["authority_version"], r["xm"]) for r in table] == [
        ("1", "1", "name v1"),
        ("1", "2", "name v2"),
    ]
    assert table[0]["dz"] == 'line one\nline "two"'
    assert list(table[0])[-2:] == ["xm", "dz"]
    path.write_text(path.read_text()[:-3])
    assert [r.outcome for r in open_sink(tmp_path, "csv", fields=fields).apply([person("1", 2)])] == ["applied"]


def test_csv_without_fields_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="csv needs 'fields'"):
        FileSinkConfig(kind="files", path=str(tmp_path / "x.csv"), format="csv")


def test_a_file_that_cannot_be_written_is_transient_and_the_files_before_it_stay_applied(tmp_path: Path) -> None:
    sink = open_sink(tmp_path, pattern="{entity_type}/log")
    (tmp_path / "out" / "death").write_text("a file where the folder should be")
    batch = [person("1", 1, "c"), death("1")]
    with pytest.raises(TransientSinkError, match="cannot append"):
        sink.apply(batch)
    (tmp_path / "out" / "death").unlink()
    assert [r.outcome for r in sink.apply(batch)] == ["skipped_duplicate", "applied"], "person/log was written once"
    sink.close()
    assert len((tmp_path / "out" / "person" / "log.jsonl").read_text().splitlines()) == 1


def test_a_second_worker_on_the_same_files_is_refused(tmp_path: Path) -> None:
    first = open_sink(tmp_path)
    with pytest.raises(ConfigError, match="another worker is writing"):
        open_sink(tmp_path)
    first.close()
    open_sink(tmp_path).close()


def test_csv_dead_letters_an_entity_type_it_has_no_columns_for(tmp_path: Path) -> None:
    sink = open_sink(tmp_path, "csv", fields={"person": {"name": "xm"}})
    results = sink.apply([death("1"), person("1", 1, "c")])
    sink.close()
    assert [r.outcome for r in results] == ["dead_lettered", "applied"]
    assert "no csv columns mapped for entity type 'death'" in str(results[0].error)


def test_a_file_that_is_not_a_change_log_is_refused_at_open_naming_it(tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    sink.apply([person("1", 1, "c"), person("2", 1, "c")])
    sink.close()
    path = tmp_path / "out" / "person.jsonl"
    first, second = path.read_text().splitlines()
    path.write_text(f"{first}\nsomeone's notes\n{second}\n")
    with pytest.raises(ConfigError, match=r"person.jsonl: record 2 is not a onceonly change line"):
        open_sink(tmp_path)
    path.write_text(f"{first}\n{second}\n")
    open_sink(tmp_path).close()  # the failed open gave its writer's lock back


def test_a_change_redelivered_after_reopen_is_a_repeat_of_its_apply(tmp_path: Path) -> None:
    sink = open_sink(tmp_path)
    sink.apply([person("1", 1, "c"), person("1", 2)])
    sink.close()
    again = open_sink(tmp_path).apply([person("1", 1, "c"), person("1", 2), person("1", 3)])
    # The file keeps no batches: the entity's last line is known as applied, an older one only as stale.
    assert [(r.outcome, r.repeat, r.applied_at) for r in again] == [
        ("skipped_stale", False, None),
        ("skipped_duplicate", True, None),
        ("applied", False, None),
    ]
