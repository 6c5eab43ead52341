"""The webhook sink's own version watermark, against a department API served over real HTTP: what the API already
holds, or holds newer, is never sent again, across batches, restarts and workers."""

from __future__ import annotations

import sqlite3
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sink_kit import NEW_ID, OLD_ID, at_once, person

from connectors.sinks import HttpSink, HttpSinkConfig, TransientSinkError, build_sink
from onceonly.cli import main
from onceonly.errors import ConfigError
from onceonly.stack.process import free_port
from services.subscriber.config import SubscribersConfig


def http_sink(api: Any, marks: str | None, timeout: float = 2.0, holder: str = "tax") -> HttpSink:
    config = HttpSinkConfig(kind="http", url=api.url, backoff=0.01, timeout=timeout, watermark_url=marks)
    sink = HttpSink(config, delete_policy="delete", holder=holder)
    sink.open()
    return sink


@pytest.fixture
def marks(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tax-marks.sqlite'}"


def sent(api: Any) -> list[str]:
    return [key for key, _ in api.requests]


def stored(url: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            sql = "SELECT entity_key, authority_version, superseded_by FROM onceonly_watermarks ORDER BY entity_key"
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def test_an_older_version_arriving_late_is_not_sent_and_is_reported_stale(department_api: Any, marks: str) -> None:
    sink = http_sink(department_api, marks)
    results = sink.apply([person("1", 1, "c"), person("1", 3), person("1", 2)])
    assert [(r.outcome, r.reason) for r in results[2:]] == [
        ("skipped_stale", "version 2 is older than the stored version 3")
    ]
    assert [r.outcome for r in sink.apply([person("1", 2)])] == ["skipped_stale"], "in a later batch too"
    sink.close()
    assert [r.outcome for r in results[:2]] == ["applied", "applied"]
    assert sent(department_api) == ["ev-1-1", "ev-1-3"]
    assert department_api.store["1"]["name"] == "name v3"


def test_a_duplicate_is_not_sent_and_is_a_repeat_of_the_apply(department_api: Any, marks: str) -> None:
    sink = http_sink(department_api, marks)
    before = int(time.time() * 1000)
    assert [r.outcome for r in sink.apply([person("1", 1, "c")])] == ["applied"]
    again = sink.apply([person("1", 1, "c"), replace(person("1", 1, "c"), event_id="copy-of-1")])
    sink.close()
    assert sent(department_api) == ["ev-1-1"]
    assert [(r.outcome, r.repeat) for r in again] == [("skipped_duplicate", True), ("skipped_duplicate", False)]
    assert again[0].applied_at is not None and before - 1000 <= again[0].applied_at <= int(time.time() * 1000) + 1000


def test_a_restarted_sink_still_skips_what_was_sent(department_api: Any, marks: str) -> None:
    first = http_sink(department_api, marks)
    first.apply([person("1", 1, "c"), person("1", 2), person("2", 1, "c")])
    first.close()
    second = http_sink(department_api, marks)  # a new process: only the watermark store remembers
    results = second.apply([person("1", 1, "c"), person("1", 2), person("2", 1, "c"), person("1", 3)])
    second.close()
    assert [r.outcome for r in results] == ["skipped_stale", "skipped_duplicate", "skipped_duplicate", "applied"]
    assert sent(department_api) == ["ev-1-1", "ev-1-2", "ev-2-1", "ev-1-3"]


def test_the_default_store_is_the_holder_s_file_in_the_state_dir(department_api: Any, tmp_path: Path) -> None:
    config = HttpSinkConfig(kind="http", url=department_api.url)
    for _ in range(2):  # a second worker (or a restart) of the same holder on this machine shares it
        sink = build_sink(config, delete_policy="mark", holder="tax", state_dir=tmp_path)
        sink.open()
        sink.apply([person("1", 1, "c")])
        sink.close()
    assert sent(department_api) == ["ev-1-1"]
    assert stored(f"sqlite:///{tmp_path / 'subscribers' / 'tax.sqlite'}") == [("1", 1, None)]


def test_two_workers_of_one_holder_share_the_default_store(department_api: Any, tmp_path: Path) -> None:
    config = HttpSinkConfig(kind="http", url=department_api.url)
    failures: list[str] = []

    def worker(parity: int) -> None:
        sink = build_sink(config, delete_policy="mark", holder="tax", state_dir=tmp_path)
        sink.open()
        try:
            changes = [person(str(i * 2 + parity), 1, "c") for i in range(40)]
            if [r.outcome for r in sink.apply(changes)] != ["applied"] * 40:
                failures.append(f"worker {parity}")
        except TransientSinkError as e:
            failures.append(str(e))
        finally:
            sink.close()

    at_once(worker)
    assert failures == []
    assert len(stored(f"sqlite:///{tmp_path / 'subscribers' / 'tax.sqlite'}")) == 80


@pytest.mark.parametrize("server", ["postgres", "mysql"])
def test_workers_on_several_machines_share_one_watermark_database(
    department_api: Any, request: pytest.FixtureRequest, server: str
) -> None:
    """What one machine's worker sent, another's (after a rebalance moved the partition) does not send again."""
    shared = str(request.getfixturevalue(f"{server}_db"))
    here, there = http_sink(department_api, shared), http_sink(department_api, shared)
    assert [r.outcome for r in here.apply([person("1", 1, "c"), person("1", 2)])] == ["applied", "applied"]
    moved = there.apply([person("1", 1, "c"), person("1", 2), person("1", 3)])
    here.close()
    there.close()
    assert [r.outcome for r in moved] == ["skipped_stale", "skipped_duplicate", "applied"]
    assert sent(department_api) == ["ev-1-1", "ev-1-2", "ev-1-3"]


def test_an_identifier_upgrade_moves_the_watermark_to_the_new_key(department_api: Any, marks: str) -> None:
    """As in the SQL sink: the old key points at the new one, so a late change to the 15-digit number is stale."""
    sink = http_sink(department_api, marks)
    assert [r.outcome for r in sink.apply([person(OLD_ID, 1, "c"), person(NEW_ID, 2, supersedes=OLD_ID)])] == [
        "applied",
        "applied",
    ]
    late = sink.apply([person(OLD_ID, 1, "c"), person(OLD_ID, 3), person(NEW_ID, 2, supersedes=OLD_ID)])
    sink.close()
    assert [(r.outcome, r.reason) for r in late] == [
        ("skipped_stale", f"{OLD_ID} was superseded by {NEW_ID}"),  # a late copy of the old record
        ("skipped_stale", f"{OLD_ID} was superseded by {NEW_ID}"),
        ("skipped_duplicate", f"event ev-{NEW_ID}-2 already applied"),
    ]
    assert sent(department_api) == [f"ev-{OLD_ID}-1", f"ev-{NEW_ID}-2"]
    assert department_api.requests[1][1]["action"] == "rekey"
    assert stored(marks) == [(NEW_ID, 2, None), (OLD_ID, 2, NEW_ID)]


def test_what_the_api_refused_or_called_stale_moves_no_watermark(department_api: Any, marks: str) -> None:
    department_api.refuse_keys = {"2"}
    department_api.versions["3"] = 9  # the API holds a newer version 3 from elsewhere: it answers 409
    sink = http_sink(department_api, marks)
    results = sink.apply([person("2", 1, "c"), person("3", 1, "c")])
    assert [r.outcome for r in results] == ["dead_lettered", "skipped_stale"]
    assert stored(marks) == []
    department_api.refuse_keys = set()  # the department fixed its side: a replay of the dead letter is sent
    assert [r.outcome for r in sink.apply([person("2", 1, "c")])] == ["applied"]
    sink.close()
    assert sent(department_api) == ["ev-2-1", "ev-3-1", "ev-2-1"]


def test_a_watermark_not_written_after_the_api_took_the_change_is_made_good_by_the_idempotency_key(
    department_api: Any, marks: str
) -> None:
    """The store fails between the API's 2xx and the write (here: someone holds its write lock longer than the
    sink's timeout). The change is not reported, so it comes again; the resend is the same request, the API
    answers it as a duplicate by its Idempotency-Key, and the watermark is written then."""
    sink = http_sink(department_api, marks, timeout=0.5)
    blocker = sqlite3.connect(marks.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    answer = department_api.handle

    def lock_the_store_then_answer(key: str, body: dict[str, Any]) -> tuple[int, dict[str, str]]:
        blocker.execute("BEGIN IMMEDIATE")
        status, headers = answer(key, body)
        return int(status), dict(headers)

    department_api.handle = lock_the_store_then_answer
    with pytest.raises(TransientSinkError, match="after the API took event ev-1-1") as caught:
        sink.apply([person("1", 1, "c"), person("1", 2)])
    assert caught.value.completed == []
    blocker.execute("ROLLBACK")
    blocker.close()
    department_api.handle = answer

    results = sink.apply([person("1", 1, "c"), person("1", 2)])
    assert [r.outcome for r in results] == ["skipped_duplicate", "applied"]
    assert [r.outcome for r in sink.apply([person("1", 1, "c")])] == ["skipped_stale"]
    sink.close()
    assert sent(department_api) == ["ev-1-1", "ev-1-1", "ev-1-2"]
    assert [body["authority_version"] for _, body in department_api.requests[:2]] == [1, 1], "the same request"


def test_a_watermark_store_that_is_down_at_start_is_transient(department_api: Any) -> None:
    with pytest.raises(TransientSinkError, match=r"watermark_url postgresql.*is not reachable"):
        http_sink(department_api, f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/marks", timeout=1.0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "watermark_url\n  Value error, not a database URL"),
        ("sqlite://", "an in-memory SQLite database forgets the watermarks"),
        ("sqlite:///:memory:", "an in-memory SQLite database forgets the watermarks"),
    ],
)
def test_a_watermark_url_that_cannot_work_is_refused_with_the_config(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HttpSinkConfig(kind="http", url="http://api", watermark_url=url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nosuchdb://x/y", "http sink watermark_url nosuchdb://x/y: Can't load plugin: sqlalchemy.dialects:nosuchdb"),
        ("mssql+pymssql://u:secret@db/x", "No module named 'pymssql'"),
    ],
)
def test_a_watermark_url_this_machine_cannot_use_is_one_config_error_at_open(
    department_api: Any, url: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        http_sink(department_api, url)
    assert "secret" not in str(caught.value) and "\n" not in str(caught.value)


def test_two_holders_cannot_share_one_watermark_table(marks: str) -> None:
    sink = {"kind": "http", "url": "http://api/{entity_type}", "watermark_url": marks}
    with pytest.raises(ValidationError, match="tax and customs keep their watermarks in the same table"):
        SubscribersConfig.model_validate({"tax": {"sink": sink}, "customs": {"sink": sink}})
    apart = {"tax": {"sink": sink}, "customs": {"sink": {**sink, "watermark_table": "customs_marks"}}}
    assert len(SubscribersConfig.model_validate(apart).root) == 2


def test_subscriber_check_says_a_bad_watermark_url_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ONCEONLY_STATE_DIR", str(tmp_path))
    for url, message in [
        ("not a url", "tax.sink.http.watermark_url: Value error, not a database URL"),
        ("nosuchdb://x/y", "http sink watermark_url nosuchdb://x/y: Can't load plugin"),
    ]:
        (tmp_path / "onceonly.yaml").write_text(
            f"subscribers:\n  tax:\n    sink: {{kind: http, url: 'http://127.0.0.1:{free_port()}/', "
            f"watermark_url: '{url}'}}\n"
        )
        monkeypatch.setattr(sys, "argv", ["onceonly", "subscriber", "check", "onceonly.yaml"])
        with pytest.raises(SystemExit) as exit_:
            main()
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
