"""The SQL sink on real SQLite, PostgreSQL and MySQL/MariaDB: the final table
equals the expected state exactly."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from sink_kit import NEW_ID, OLD_ID, PERSON_DDL, at_once, death, person
from sqlalchemy.dialects import mysql

from connectors.sinks import MappingError, SqlSink, SqlSinkConfig, TransientSinkError
from connectors.sinks.sql_dialect import create_engine, upsert_statement
from onceonly.errors import ConfigError
from onceonly.stack.process import free_port

Rows = Callable[..., list[Any]]
Config = Callable[..., SqlSinkConfig]
DIED = "2024-05-01"


def kinds(error: BaseException | None) -> list[str]:
    return [c.__name__ for c in type(error).__mro__]


def open_sink(config: SqlSinkConfig, policy: str = "mark") -> SqlSink:
    sink = SqlSink(config, delete_policy=policy)  # type: ignore[arg-type]
    sink.open()
    return sink


def outcomes(sink: SqlSink, changes: list[Any]) -> list[str]:
    return [r.outcome for r in sink.apply(changes)]


def test_every_case_of_the_issue_ends_in_the_expected_table(db_url: str, rows: Rows, sql_config: Config) -> None:
    sink = open_sink(sql_config(db_url), "mark")
    first = [
        person("1", 1, "c"),
        person("1", 3, district_code="110101"),
        person("1", 2),  # out of order: older than 3
        person("1", 3, district_code="110101"),  # duplicate
        person(OLD_ID, 1, "c"),
        person("3", 1, "c"),
        person("4", 1, "c"),
        person("5", 1, "c"),
    ]
    assert outcomes(sink, first) == ["applied", "applied", "skipped_stale", "skipped_duplicate"] + ["applied"] * 4
    second = [
        person("1", 3, district_code="110101"),  # redelivered after a crash
        person(NEW_ID, 2, supersedes=OLD_ID),  # identifier upgrade
        person(OLD_ID, 1, "c"),  # a late copy of the old record
        person("3", 2, correction=True, name="name corrected"),
        death("4"),  # the health commission's death certificate: marked, not deleted
        person("4", 5),  # a later update from public security must not revive the person
        person("5", 2, "d"),  # moved out: marked as cancelled
    ]
    assert outcomes(sink, second) == [
        "skipped_duplicate",
        "applied",
        "skipped_stale",
        "applied",
        "applied",
        "skipped_stale",
        "applied",
    ]
    sink.close()
    assert rows(db_url) == [
        ("1", "name v3", "address v3", "110101", "normal", 3, False, None),
        (NEW_ID, "name v2", "address v2", None, "normal", 2, False, None),
        ("3", "name corrected", "address v2", None, "normal", 2, True, None),
        ("4", "name v1", "address v1", None, "deceased", 1, False, DIED),
        ("5", "name v1", "address v1", None, "cancelled", 2, False, None),
    ]


def test_a_death_under_the_delete_policy_removes_the_person_for_good_unless_retracted(
    db_url: str, rows: Rows, sql_config: Config
) -> None:
    sink = open_sink(sql_config(db_url), "delete")
    assert outcomes(sink, [person("7", 1, "c"), person("8", 1, "c"), death("7"), death("7")]) == [
        "applied",
        "applied",
        "applied",
        "skipped_duplicate",
    ]
    assert outcomes(sink, [person("7", 2), person("8", 2, "d"), person("8", 1, "c")]) == [
        "skipped_stale",
        "applied",
        "skipped_stale",
    ]
    assert [r[0] for r in rows(db_url)] == []
    # A certificate issued in error is retracted: the next change from public security brings the person back.
    assert outcomes(sink, [death("7", 2, "d"), person("7", 3)]) == ["applied", "applied"]
    sink.close()
    assert rows(db_url) == [("7", "name v3", "address v3", None, "normal", 3, False, None)]


def test_a_retracted_death_unmarks_the_person_under_the_mark_policy(
    db_url: str, rows: Rows, sql_config: Config
) -> None:
    sink = open_sink(sql_config(db_url), "mark")
    sink.apply([person("7", 1, "c"), death("7")])
    assert rows(db_url)[0][4:] == ("deceased", 1, False, DIED)
    assert outcomes(sink, [death("7", 2, "d")]) == ["applied"]
    sink.close()
    assert rows(db_url) == [("7", "name v1", "address v1", None, "normal", 1, False, None)]


def test_a_death_without_the_persons_id_is_dead_lettered(db_url: str, sql_config: Config) -> None:
    sink = open_sink(sql_config(db_url))
    nameless = replace(death("7"), after={"certificate_no": "DC7"})
    results = sink.apply([nameless])
    sink.close()
    assert [r.outcome for r in results] == ["dead_lettered"]
    assert isinstance(results[0].error, MappingError) and "id_number" in str(results[0].error)


def test_upgrade_when_both_ids_exist_or_only_the_new_one_arrives(db_url: str, rows: Rows, sql_config: Config) -> None:
    sink = open_sink(sql_config(db_url))
    other_old, other_new = "320101800101002", "320101198001010025"
    sink.apply([person(OLD_ID, 1, "c"), person(NEW_ID, 1, "c", name="registered twice")])
    results = sink.apply([person(NEW_ID, 3, supersedes=OLD_ID), person(other_new, 5, supersedes=other_old)])
    sink.close()
    assert [r.outcome for r in results] == ["applied", "applied"]
    assert [(r[0], r[1]) for r in rows(db_url)] == [(NEW_ID, "name v3"), (other_new, "name v5")]


def test_a_bad_record_is_dead_lettered_and_the_rest_of_its_batch_applies(
    db_url: str, rows: Rows, sql_config: Config
) -> None:
    sink = open_sink(sql_config(db_url))
    pension = replace(person("4", 1, "c"), entity_type="pension")
    results = sink.apply([person("1", 1, "c"), person("2", 1, "c", name=None), pension, person("3", 1, "c")])
    sink.close()
    assert [r.outcome for r in results] == ["applied", "dead_lettered", "dead_lettered", "applied"]
    assert "IntegrityError" in kinds(results[1].error), "the driver's own error, for the dead letter's header"
    assert isinstance(results[2].error, MappingError) and "pension" in str(results[2].error)
    assert [r[0] for r in rows(db_url)] == ["1", "3"]
    marks = rows(db_url, "SELECT entity_key FROM onceonly_watermarks ORDER BY entity_key")
    assert marks == [("1",), ("3",)], "a dead-lettered change must not move the watermark"


@pytest.fixture(params=["postgres", "mysql"])
def server_db(request: pytest.FixtureRequest) -> str:
    """An empty database on a server (SQLite truncates nothing and has no row locks), with the person table."""
    url = str(request.getfixturevalue(f"{request.param}_db"))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(PERSON_DDL)
    engine.dispose()
    return url


def test_a_value_too_long_for_the_column_is_dead_lettered_on_a_server(server_db: str, sql_config: Config) -> None:
    sink = open_sink(sql_config(server_db))
    results = sink.apply([person("1", 1, "c", district_code="x" * 50), person("2", 1, "c")])
    sink.close()
    assert [r.outcome for r in results] == ["dead_lettered", "applied"]
    assert "DataError" in kinds(results[0].error)


def test_a_row_locked_by_someone_else_is_transient_on_a_server(server_db: str, sql_config: Config) -> None:
    """An operator's open transaction holds the row: the sink waits out its timeout, then pauses (no dead letter).
    MySQL's own wait is 50 s (innodb_lock_wait_timeout): the sink's connections bound it to connect_timeout."""
    engine = sa.create_engine(server_db)
    sink = open_sink(sql_config(server_db).model_copy(update={"connect_timeout": 1.0}))
    sink.apply([person("1", 1, "c")])
    with engine.connect() as operator:
        operator.exec_driver_sql("SELECT * FROM onceonly_watermarks FOR UPDATE")
        started = time.monotonic()
        with pytest.raises(TransientSinkError, match=r"(?i)lock (wait )?timeout"):
            sink.apply([person("1", 2)])
        assert time.monotonic() - started < 4
        operator.rollback()
    assert outcomes(sink, [person("1", 2)]) == ["applied"]
    sink.close()
    engine.dispose()


def test_postgresql_sessions_bound_lock_waits_and_plan_every_statement(postgres_db: str) -> None:
    """A cached generic plan made while the watermark table was empty made its reads scan the table (bench/apply.py)."""
    engine = create_engine(postgres_db, connect_timeout=2.5)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "2500ms"
        assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
    engine.dispose()


def test_mysql_sessions_bound_lock_waits_and_read_committed(mysql_db: str) -> None:
    """REPEATABLE READ (InnoDB's default) gap-locks absent watermark keys: two workers adding entities deadlocked."""
    engine = create_engine(mysql_db, connect_timeout=2.5)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT @@SESSION.innodb_lock_wait_timeout").scalar() == 3
        assert conn.get_isolation_level() == "READ COMMITTED"
    engine.dispose()


def test_two_workers_adding_new_entities_at_once_both_apply_everything(
    db_url: str, rows: Rows, sql_config: Config
) -> None:
    """Workers of one department share its partitions, so their batches bring new keys into the same watermark
    index at once; on MySQL under REPEATABLE READ a third of such batches died in deadlocks."""
    failures: list[str] = []

    def worker(parity: int) -> None:
        sink = open_sink(sql_config(db_url))
        try:
            for b in range(10):
                batch = [person(f"{(b * 50 + i) * 2 + parity:06d}", 1, "c") for i in range(50)]
                try:
                    assert outcomes(sink, batch) == ["applied"] * 50
                except TransientSinkError as e:
                    failures.append(str(e))
        finally:
            sink.close()

    at_once(worker)
    assert failures == []
    assert len(rows(db_url)) == 1000


def test_a_record_that_breaks_another_constraint_of_the_table_is_dead_lettered(
    db_url: str, rows: Rows, sql_config: Config
) -> None:
    """A second unique key and a CHECK: on MySQL the upsert updated the row holding the other key (the new person
    was never written, yet reported applied), and a failed CHECK paused the holder for good as if the store were
    down."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE gjj_grxx")
        conn.exec_driver_sql(
            PERSON_DDL.replace("dz VARCHAR(200),", "dz VARCHAR(200) UNIQUE,").replace(
                "xzqh VARCHAR(6),", "xzqh VARCHAR(6) CHECK (xzqh <> '000000'),"
            )
        )
    engine.dispose()
    sink = open_sink(sql_config(db_url))
    batch = [
        person("1", 1, "c", address="same"),
        person("2", 1, "c", address="same", name="another person"),
        person("3", 1, "c", district_code="000000"),
        person("4", 1, "c"),
    ]
    results = sink.apply(batch)
    assert [r.outcome for r in results] == ["applied", "dead_lettered", "dead_lettered", "applied"]
    assert "IntegrityError" in kinds(results[1].error)
    assert outcomes(sink, [person("1", 2, address="moved")]) == ["applied"]  # the update path still works
    sink.close()
    assert [r[:3] for r in rows(db_url)] == [("1", "name v2", "moved"), ("4", "name v1", "address v1")]
    marks = rows(db_url, "SELECT entity_key FROM onceonly_watermarks ORDER BY entity_key")
    assert marks == [("1",), ("4",)]


def test_keys_that_differ_only_in_case_keep_their_own_watermarks(db_url: str, rows: Rows, sql_config: Config) -> None:
    """MySQL's default collation matched 'a1' to A1's watermark and wrote version 1 over its 5: a replayed stale
    A1 would then apply. The watermark table compares keys exactly on every database."""
    sink = open_sink(sql_config(db_url))
    assert outcomes(sink, [person("A1", 5, "c")]) == ["applied"]
    assert outcomes(sink, [person("a1", 1, "c")]) == ["applied"]
    assert outcomes(sink, [person("A1", 3)]) == ["skipped_stale"]
    sink.close()
    marks = rows(db_url, "SELECT entity_key, authority_version FROM onceonly_watermarks ORDER BY authority_version")
    assert marks == [("a1", 1), ("A1", 5)]


@pytest.mark.parametrize(
    ("ddl", "overrides", "policy", "message"),
    [
        ("CREATE TABLE other (x INTEGER)", {}, "mark", "gjj_grxx does not exist"),
        (PERSON_DDL, {"columns": {"name": "xingming"}}, "mark", "no column xingming"),
        (PERSON_DDL, {"deleted_column": None}, "mark", "needs deleted_column"),
        (PERSON_DDL.replace("PRIMARY KEY", ""), {}, "delete", "neither the primary key nor unique"),
        (PERSON_DDL.replace("swrq DATE", "sw DATE"), {}, "delete", "death writes swrq"),
    ],
)
def test_a_mapping_that_does_not_fit_the_store_is_refused_at_open(
    tmp_path: Any, sql_config: Config, ddl: str, overrides: dict[str, Any], policy: str, message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(ddl)
    engine.dispose()
    with pytest.raises(ConfigError, match=message):
        open_sink(sql_config(url, **overrides), policy)


def test_a_death_must_end_a_mapped_table() -> None:
    tables = {"death": {"ends": "person"}}
    with pytest.raises(ValueError, match="death ends 'person', which is not an entity type mapped to a table"):
        SqlSinkConfig.model_validate({"kind": "sql", "url": "sqlite://", "tables": tables})


def test_an_unreachable_database_is_transient_not_a_dead_letter(sql_config: Config) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(TransientSinkError):
        open_sink(sql_config(url))


def test_mysql_gets_its_own_upsert() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("k", sa.String(18), primary_key=True), sa.Column("v", sa.String(9)))
    stmt = upsert_statement("mysql", table, ["k"], ["k", "v"])
    assert stmt is not None
    assert "ON DUPLICATE KEY UPDATE v = VALUES(v)" in str(stmt.compile(dialect=mysql.dialect()))
    assert upsert_statement("mssql", table, ["k"], ["k", "v"]) is None


def test_a_death_that_arrives_before_the_identifier_upgrade_still_ends_the_upgraded_person(
    db_url: str, rows: Rows, sql_config: Config
) -> None:
    # The distributor reads change.death and change.person independently, so a death keyed by the new 18-digit
    # number can reach a holder before the upgrade that re-keys its 15-digit record (seen in `onceonly demo`).
    sink = open_sink(sql_config(db_url), "mark")
    sink.apply([person(OLD_ID, 1, "c")])
    assert outcomes(sink, [death(NEW_ID), person(NEW_ID, 2, supersedes=OLD_ID)]) == ["applied", "applied"]
    sink.close()
    assert rows(db_url) == [(NEW_ID, "name v2", "address v2", None, "deceased", 2, False, DIED)]


def test_a_change_recorded_before_the_death_but_delivered_after_it_still_lands(
    db_url: str, rows: Rows, sql_config: Config
) -> None:
    # The same cross-topic overtaking as above, for an ordinary update (a move) of a person who then died.
    sink = open_sink(sql_config(db_url), "mark")
    later_death = replace(death("7"), recorded_at=1_800_000_000_000)
    sink.apply([person("7", 1, "c"), later_death])
    assert outcomes(sink, [person("7", 2)]) == ["applied"]
    sink.close()
    assert rows(db_url) == [("7", "name v2", "address v2", None, "deceased", 2, False, DIED)]


def test_under_the_delete_policy_a_change_the_death_overtook_does_not_bring_the_person_back(
    db_url: str, rows: Rows, sql_config: Config
) -> None:
    sink = open_sink(sql_config(db_url), "delete")
    sink.apply([person(OLD_ID, 1, "c"), person("7", 1, "c"), person("8", 1, "c")])
    later_death = replace(death("7"), recorded_at=1_800_000_000_000)
    assert outcomes(sink, [death(NEW_ID), later_death]) == ["applied", "applied"]
    # the upgrade of a person whose death overtook it, and a move recorded before a death: both stay gone
    assert outcomes(sink, [person(NEW_ID, 2, supersedes=OLD_ID), person("7", 2)]) == ["applied", "applied"]
    assert outcomes(sink, [person("7", 2), person(OLD_ID, 3)]) == ["skipped_duplicate", "skipped_stale"]
    sink.close()
    assert [r[0] for r in rows(db_url)] == ["8"]


def test_a_change_recorded_after_the_death_is_still_refused_once_an_overtaken_one_landed(
    db_url: str, rows: Rows, sql_config: Config
) -> None:
    sink = open_sink(sql_config(db_url), "mark")
    death_at = 1_700_000_000_010
    sink.apply([person("7", 1, "c"), replace(death("7"), recorded_at=death_at)])
    before, after = person("7", 2), replace(person("7", 3), recorded_at=death_at + 1)
    assert outcomes(sink, [before, after]) == ["applied", "skipped_stale"]
    assert outcomes(sink, [death("7", 2, "d"), after]) == ["applied", "applied"]  # retracted: alive again
    sink.close()
    assert rows(db_url) == [("7", "name v3", "address v3", None, "normal", 3, False, None)]


def test_a_death_addressed_to_the_old_key_ends_the_upgraded_record(db_url: str, rows: Rows, sql_config: Config) -> None:
    # The health commission still knew the 15-digit number; the holder had already re-keyed the person.
    sink = open_sink(sql_config(db_url), "mark")
    sink.apply([person(OLD_ID, 1, "c"), person(NEW_ID, 2, supersedes=OLD_ID)])
    assert outcomes(sink, [death(OLD_ID)]) == ["applied"]
    sink.close()
    assert rows(db_url) == [(NEW_ID, "name v2", "address v2", None, "deceased", 2, False, DIED)]


def test_an_older_watermark_table_gets_the_new_columns_and_keeps_its_marks(
    db_url: str, rows: Rows, sql_config: Config
) -> None:
    """A watermark table made before ends were kept with their time: upgraded in place at open."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE onceonly_watermarks (entity_type VARCHAR(64) NOT NULL, entity_key VARCHAR(128) NOT NULL, "
            "authority_version BIGINT NOT NULL, event_id VARCHAR(64) NOT NULL, superseded_by VARCHAR(128), "
            "ended_by VARCHAR(64), applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, "
            "PRIMARY KEY (entity_type, entity_key))"
        )
        conn.exec_driver_sql(
            "INSERT INTO onceonly_watermarks (entity_type, entity_key, authority_version, event_id, ended_by) "
            "VALUES ('person', '7', 4, 'ev-7-4', 'death-7-1')"
        )
    engine.dispose()
    sink = open_sink(sql_config(db_url), "mark")
    # the end's time is unknown: an ordinary change is refused as before, a duplicate is still a duplicate
    assert outcomes(sink, [person("7", 4), person("7", 5)]) == ["skipped_duplicate", "skipped_stale"]
    sink.close()
    assert rows(db_url) == []


def test_a_batch_redelivered_after_its_commit_is_answered_as_applied_earlier(
    db_url: str, rows: Rows, sql_config: Config
) -> None:
    """The crash between the commit and the receipts: each change of the batch comes again and is a repeat of an
    apply, with the time the store wrote it; a change the store never took is not."""
    sink = open_sink(sql_config(db_url), "mark")
    batch = [person("1", 1, "c"), person("1", 2), person("2", 1, "c"), person(NEW_ID, 2, supersedes=OLD_ID)]
    before = int(time.time() * 1000)
    assert outcomes(sink, batch) == ["applied"] * 4
    after = int(time.time() * 1000)
    table = rows(db_url)

    again = sink.apply(batch)
    assert [(r.outcome, r.repeat) for r in again] == [("skipped_duplicate", True)] * 4
    assert all(r.applied_at is not None and before - 1000 <= r.applied_at <= after + 1000 for r in again)
    stale = sink.apply([replace(person("2", 1, "c"), event_id="other-2-1"), person("1", 0)])
    assert [(r.outcome, r.repeat) for r in stale] == [("skipped_duplicate", False), ("skipped_stale", False)]
    assert rows(db_url) == table, "a repeat writes nothing"
    sink.close()
