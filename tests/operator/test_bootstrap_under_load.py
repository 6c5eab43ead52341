"""A new holder joins a running system under load: its agreement comes into force while changes flow (so the
distributor starts delivering to it live), ``holder bootstrap`` gives it the current granted state, the live changes
continue, and its store ends equal to what its agreement grants of the authority's state, with no
change applied twice (embedded broker, real distributor, subscribers, Redis and SQLite)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from operator_kit import PERSON_GRANTS, Phases, System, system, wait_for
from typer.testing import CliRunner

from onceonly.cli import app
from onceonly.demo.holders import column, table
from onceonly.publisher import Publisher
from onceonly.settings import Settings
from onceonly.testing import process_env

pytestmark = pytest.mark.broker

NEWCOMER = "civil_affairs"


class Load:
    """Changes at a steady rate in a thread, as the authority keeps recording while the holder joins."""

    def __init__(self, s: System, publisher: Publisher, per_second: int = 150) -> None:
        self.s, self.publisher, self.per_second = s, publisher, per_second
        self.stop = threading.Event()
        self.sent = 0
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="load", daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                batch = self.s.people.born(5) + self.s.people.moves(10)
                self.s.people.publish(self.publisher, batch)
                self.sent += len(batch)
                self.stop.wait(len(batch) / self.per_second)
        except BaseException as e:
            self.errors.append(e)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.errors, self.errors


def test_bootstrap_of_a_new_holder_under_load(topics: Settings, tmp_path: Path, clean_redis: None) -> None:
    mark = Phases()
    in_force = datetime.now(UTC) + timedelta(seconds=8)  # the newcomer's agreement comes into force then
    with system(topics, tmp_path, ["hrss", NEWCOMER], {NEWCOMER: in_force}) as s, Publisher(topics) as publisher:
        s.start_distributor()
        s.start_subscriber("hrss")
        s.start_subscriber(NEWCOMER)
        s.wait_ready()
        mark("services ready")
        s.people.publish(publisher, s.people.born(400))
        with Load(s, publisher) as load:
            wait_for(lambda: datetime.now(UTC) > in_force, 30, "the agreement to come into force")
            mark("agreement in force, under load")
            before = len(s.people.log)
            # From now on live changes reach the newcomer; some before the snapshot is read (the overlap the
            # subscriber's watermark handles), then the operator bootstraps it while changes keep coming.
            wait_for(lambda: s.count(f"inbox.{NEWCOMER}") > 50, 30, "live changes in the newcomer's inbox")
            mark("live changes reach the newcomer")
            env = process_env(
                topics, ONCEONLY_REDIS_URL=topics.redis_url or "", ONCEONLY_OPERATOR="dana", COLUMNS="200"
            )
            result = CliRunner().invoke(
                app,
                ["holder", "bootstrap", NEWCOMER, "--reason", "mca-test in force", "-c", str(s.agreements_file)],
                env=env,
            )
            assert result.exit_code == 0, (result.output, result.exception)
            assert f"bootstrapped {NEWCOMER}: " in result.stdout
            mark("bootstrapped")
            sent = load.sent
            wait_for(lambda: load.sent > sent + 300, 30, "more load after the bootstrap")
        during = len(s.people.log) - before
        s.wait_converged(NEWCOMER)
        s.wait_converged("hrss")
        mark("converged")

        # Its store equals the authority's current state, projected through its agreement (no condition here).
        truth = s.people.truth.live("person")
        rows = {r[0]: r for r in table_rows(s)}
        assert set(rows) == set(truth)
        for key, person in truth.items():
            assert rows[key][1:] == tuple(str(person[f]) for f in PERSON_GRANTS[NEWCOMER][1:]), key

        # No change applied twice: per entity and version at most one "applied" receipt from the newcomer.
        receipts = [r for r in s.read_receipts() if r["holder"] == NEWCOMER]
        applied = Counter((r["entity_key"], r["authority_version"]) for r in receipts if r["outcome"] == "applied")
        assert applied and max(applied.values()) == 1
        outcomes = Counter(r["outcome"] for r in receipts)
        assert outcomes["dead_lettered"] == 0
        assert outcomes["skipped_duplicate"] + outcomes["skipped_stale"] > 0, "the fill and live changes overlapped"
        print(
            f"  {len(truth)} people, {during} changes during the switch and bootstrap, newcomer outcomes "
            f"{dict(outcomes)}"
        )


def table_rows(s: System) -> list[tuple[str, ...]]:
    import sqlalchemy as sa

    engine = sa.create_engine(s.stores[NEWCOMER])
    try:
        with engine.connect() as conn:
            cols = ", ".join(column(NEWCOMER, "person", f) for f in PERSON_GRANTS[NEWCOMER])
            got = conn.exec_driver_sql(f"SELECT {cols} FROM {table(NEWCOMER, 'person')}").all()
    finally:
        engine.dispose()
    return [tuple(str(v) for v in r) for r in got]
