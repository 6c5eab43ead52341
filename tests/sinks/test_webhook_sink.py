"""The webhook sink against a department API served over real HTTP."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sink_kit import person

from connectors.sinks import HttpSink, HttpSinkConfig, TransientSinkError
from onceonly.stack.process import free_port


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's sinks keep their watermarks in its own state dir (``<state dir>/subscribers/tax.sqlite``)."""
    monkeypatch.setenv("ONCEONLY_STATE_DIR", str(tmp_path))
    return tmp_path


def open_sink(
    url: str, retries: int = 3, fields: dict[str, dict[str, str]] | None = None, backoff: float = 0.01
) -> HttpSink:
    config = HttpSinkConfig(kind="http", url=url, retries=retries, backoff=backoff, timeout=2.0, fields=fields or {})
    sink = HttpSink(config, delete_policy="delete", holder="tax")
    sink.open()
    return sink


def test_posts_each_change_with_its_event_id_as_idempotency_key(department_api: Any) -> None:
    sink = open_sink(department_api.url + "/changes/{entity_type}", fields={"person": {"name": "xm"}})
    results = sink.apply(
        [person("1", 1, "c"), person("1", 1, "c"), person("1", 3), person("1", 2), person("1", 4, "d")]
    )
    sink.close()
    assert [r.outcome for r in results] == ["applied", "skipped_duplicate", "applied", "skipped_stale", "applied"]
    assert [key for key, _ in department_api.requests] == ["ev-1-1", "ev-1-3", "ev-1-4"], "the sink's watermark"
    first = department_api.requests[0][1]
    assert first["data"] == {"xm": "name v1"}, "only mapped fields, under the department's names"
    assert (first["action"], first["authority_version"]) == ("upsert", 1)
    assert department_api.requests[-1][1]["action"] == "delete"
    assert department_api.store == {}


def test_503_is_retried_and_applies_once(department_api: Any) -> None:
    department_api.failures_left = 2
    sink = open_sink(department_api.url)
    results = sink.apply([person("1", 1, "c")])
    sink.close()
    assert [r.outcome for r in results] == ["applied"]
    assert len(department_api.requests) == 3
    assert department_api.store == {"1": {"name": "name v1", "address": "address v1"}}


def test_an_api_still_down_after_retries_is_transient_and_reports_what_landed(department_api: Any) -> None:
    department_api.down_after = 1
    sink = open_sink(department_api.url, retries=1)
    with pytest.raises(TransientSinkError, match="HTTP 503") as caught:
        sink.apply([person("1", 1, "c"), person("2", 1, "c"), person("3", 1, "c")])
    sink.close()
    assert [(r.change.entity_key, r.outcome) for r in caught.value.completed] == [("1", "applied")]
    assert len(department_api.requests) == 3, "one success, then one try and one retry for the second change"


def test_a_refused_record_is_dead_lettered_and_the_next_goes_on(department_api: Any) -> None:
    department_api.refuse_keys = {"2"}
    sink = open_sink(department_api.url)
    results = sink.apply([person("1", 1, "c"), person("2", 1, "c"), person("3", 1, "c")])
    sink.close()
    assert [r.outcome for r in results] == ["applied", "dead_lettered", "applied"]
    assert "HTTP 422: refused" in str(results[1].error)


@pytest.mark.parametrize("said", ["aplied", "dead_lettered", ""])
def test_an_unknown_outcome_header_is_dead_lettered_naming_it_and_the_next_goes_on(
    department_api: Any, said: str
) -> None:
    department_api.outcome_for_keys = {"2": said}
    sink = open_sink(department_api.url)
    results = sink.apply([person("1", 1, "c"), person("2", 1, "c"), person("3", 1, "c")])
    sink.close()
    assert [r.outcome for r in results] == ["applied", "dead_lettered", "applied"]
    assert results[1].reason is not None and f"X-Onceonly-Outcome: {said!r}" in results[1].reason
    assert "not one of applied, skipped_duplicate, skipped_stale" in results[1].reason
    assert sorted(department_api.store) == ["1", "3"]


def test_nobody_listening_is_transient() -> None:
    sink = open_sink(f"http://127.0.0.1:{free_port()}", retries=1)
    with pytest.raises(TransientSinkError, match="ConnectError"):
        sink.apply([person("1", 1, "c")])
    sink.close()


def test_a_stopping_worker_is_not_held_up_by_retries(department_api: Any) -> None:
    department_api.down_after = 1
    sink = open_sink(department_api.url, retries=5, backoff=2.0)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(TransientSinkError, match="stopping") as caught:
        sink.apply([person("1", 1, "c"), person("2", 1, "c")], stop)
    sink.close()
    assert time.monotonic() - started < 5, "it waited out its backoff (2 s, then 4 s, ...)"
    assert [r.outcome for r in caught.value.completed] == ["applied"]
