"""The main job end to end, as a user runs it: ``python -m onceonly demo`` on the session stack. Every holder
converges (civil_affairs after joining late, by a bootstrap), the poison record is dead-lettered, every authority's
changes went through its real adapter (outbox source, snapshot diff, gateway, SDK), and nothing is left running.
The same run's stores then prove the check is strict: one wrong cell is named by holder and field."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from onceonly.catalog import schema_dir
from onceonly.demo.city import seed_city
from onceonly.demo.expected import verify
from onceonly.demo.holders import HOLDERS, sqlite_store
from onceonly.demo.truth import Record, Truth
from onceonly.demo.workload import depositors, seed, wave
from onceonly.testing import StackInfo, process_env, stack_namespace
from services.distributor import load_agreements

pytestmark = pytest.mark.broker

PEOPLE = 200
ROW = re.compile(r"^│ (\w+)\s+│\s+(\d+) │\s+(\d+) │\s+(\d+) │\s+(\d+) │\s+(\d+) │ converged", re.MULTILINE)
FINAL = re.compile(
    r"converged (\d+)/(\d+) holders, (\d+) changes, dead letters (\d+), p50 (\d+) ms, p99 (\d+) ms, (\d+) changes/s"
)


@dataclass
class Run:
    code: int
    out: str
    err: str
    state: Path
    left_running: list[str]

    def line(self, pattern: str) -> re.Match[str]:
        found = re.search(pattern, self.out, re.MULTILINE)
        assert found, f"no line matching {pattern!r} in:\n{self.out}"
        return found

    @property
    def folder(self) -> Path:
        (run,) = (self.state / "demo").iterdir()
        return run


def running_under(state: Path) -> list[str]:
    """Processes anywhere on the machine whose command line names this run's folder (adapters, a stack)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(state) in cmd:
            found.append(cmd)
    return found


@pytest.fixture(scope="module")
def small_city(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One run of the real command on the session stack (its topics under a fresh prefix)."""
    state = tmp_path_factory.mktemp("demo")
    settings = stack_namespace(stack)
    env = process_env(settings, ONCEONLY_REDIS_URL=stack.redis_url, COLUMNS="200")
    cmd = [sys.executable, "-m", "onceonly", "demo", "--people", str(PEOPLE), "--timeout", "180"]
    done = subprocess.run(
        [*cmd, "--state-dir", str(state)], env=env, capture_output=True, text=True, timeout=400, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr, state, running_under(state))


def test_a_small_city_converges_at_every_holder(small_city: Run) -> None:
    run = small_city
    assert run.code == 0, run.out[-3000:] + run.err[-3000:]
    assert "Traceback" not in run.err
    last = run.out.strip().splitlines()[-1]
    final = FINAL.fullmatch(last)
    assert final, last
    converged, holders, changes, dead, p50, p99, _ = (int(g) for g in final.groups())
    assert (converged, holders, dead) == (6, 6, 1)
    assert changes > PEOPLE and 0 < p50 <= p99
    assert "schema id" in run.line(r"^poison record dead-lettered: (.*)$")[1]

    # households were registered at public security and reached health (checked field by field in the next test)
    seeded = run.line(r"seeded (\d+) people in (\d+) households")
    assert int(seeded[1]) == PEOPLE and 0 < int(seeded[2]) < PEOPLE

    # civil_affairs joined after the seed and was brought up by the bootstrap, before the wave's live changes
    boot = run.line(r"^civil_affairs bootstrapped \(onceonly holder bootstrap\): (\d+) records sent \((\d+) withheld")
    assert int(boot[1]) >= PEOPLE and int(boot[2]) == 0
    joins = run.out.index("civil_affairs joins under agreement mca-2024-004")
    row = {h: [int(n) for n in cells] for h, *cells in ROW.findall(run.out)}
    assert sorted(row) == sorted(HOLDERS)
    applied, filled = row["civil_affairs"][:2]
    assert filled == int(boot[1]) and applied < PEOPLE  # the seed reached it as fills, not as live changes
    assert [r[3] for r in row.values()] == [0] * 6  # the final lag column: every inbox committed to its end
    assert run.out.index("seeded ") < joins < run.line(r"^recorded \d+ changes at their authorities").start()

    # every change went through its authority's adapter, each counted once
    outbox = run.line(r"^public_security → outbox source: (\d+) of (\d+) outbox rows published$")
    published, written = int(outbox[1]), int(outbox[2])
    assert published == written > PEOPLE
    snapshot = run.line(
        r"^civil_affairs → snapshot diff of CSV exports: "
        r"(\d+) events from (\d+) rows; re-run emitted 0$"
    )
    assert int(snapshot[1]) == int(snapshot[2]) > 0  # marriages and adoptions; the re-run on the same export: none
    gateway = run.line(r"^health → gateway: (\d+) of (\d+) posts accepted.*answered from its Idempotency-Key$")
    assert int(gateway[1]) == int(gateway[2]) > 0  # births and deaths; a repeated post was a replay
    sdk = int(run.line(r"^hrss → Python SDK: (\d+) published$")[1])
    assert sdk > 0  # pension enrolments
    assert written + int(snapshot[2]) + int(gateway[2]) + sdk == changes

    assert run.left_running == []  # no adapter outlived the demo


def story(people: int) -> tuple[list[Record], set[str]]:
    """The demo's changes and the fund's depositors, rebuilt from the same seeds (the demo records them in this
    order: the seed with households, interest in the depositors, then the wave)."""
    city, truth = seed_city(people), Truth()
    changes = [step.change for step in seed(city, truth, households=True)]
    interest = set(depositors(truth))
    changes += [step.change for step in wave(city, truth)]
    return changes, interest


def corrupt(store: str, statement: str) -> None:
    with sqlite3.connect(store.removeprefix("sqlite:///")) as db:
        assert db.execute(statement).rowcount == 1


def test_one_wrong_cell_is_named_by_holder_and_field(small_city: Run) -> None:
    assert small_city.code == 0, small_city.out[-3000:]
    stores = {h: sqlite_store(small_city.folder, h) for h in HOLDERS}
    agreements = load_agreements(schema_dir() / "agreements.yaml")
    changes, interest = story(PEOPLE)
    assert any(c["entity_type"] == "household" for c in changes)
    assert verify(agreements, stores, changes, interest) == {h: [] for h in HOLDERS}

    # a wrong value (health's household district), and a NULL where the store must say "not deleted" (hrss)
    corrupt(stores["health"], "UPDATE ehr_family SET area_code = '110999' WHERE rowid = 1")
    alive = "(SELECT min(rowid) FROM ac01 WHERE onceonly_deleted = 0)"
    corrupt(stores["hrss"], f"UPDATE ac01 SET onceonly_deleted = NULL WHERE rowid = {alive}")
    found: dict[str, Any] = verify(agreements, stores, changes, interest)
    assert {h for h, p in found.items() if p} == {"health", "hrss"}
    assert len(found["health"]) == 1 and "ehr_family " in found["health"][0]
    assert "area_code (district_code) is '110999', expected '1101" in found["health"][0]
    assert len(found["hrss"]) == 1 and "onceonly_deleted is None, expected False" in found["hrss"][0]


def test_on_a_postgresql_server_the_demo_drops_the_databases_it_created(
    stack: StackInfo, postgres_url: str, tmp_path: Path
) -> None:
    """``--database-url``: each department gets a database on the server for the run, and none is left after it."""
    import sqlalchemy as sa

    env = process_env(stack_namespace(stack), ONCEONLY_REDIS_URL=stack.redis_url, COLUMNS="200")
    cmd = [sys.executable, "-m", "onceonly", "demo", "--people", "10", "--timeout", "180"]
    cmd += ["--database-url", postgres_url, "--state-dir", str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, check=False)
    runs = list((tmp_path / "demo").iterdir()) if (tmp_path / "demo").is_dir() else []
    assert len(runs) == 1, done.stdout[-3000:] + done.stderr[-3000:]
    prefix = f"demo_{runs[0].name}_"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            query = "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY datname"
            left = [name for (name,) in conn.exec_driver_sql(query, (prefix,))]
            for name in left:  # a failed run must not leave them on the shared server either
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert FINAL.fullmatch(done.stdout.strip().splitlines()[-1]), done.stdout[-1000:]
    assert left == [], "the demo left its department databases on the server"
    dropped = re.search(r"^dropped the (\d+) department databases", done.stdout, re.MULTILINE)
    assert dropped and int(dropped[1]) == len(HOLDERS), done.stdout[-3000:]


def test_help_has_an_example_and_bad_options_are_one_line(tmp_path: Path) -> None:
    def demo(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "onceonly", "demo", *args, "--state-dir", str(tmp_path)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, env=env)

    env = {**os.environ, "COLUMNS": "200"}
    shown = demo("--help")
    assert shown.returncode == 0 and "Example:  onceonly demo --people" in shown.stdout
    assert re.search(r"--keep-stores\s.*leave the department databases on the server", shown.stdout), shown.stdout

    refusals = {
        ("--people", "0"): "error: --people 0: the story needs at least 10 residents",
        ("--rate", "-5"): "error: --rate -5.0: give a positive number",
        ("--database-url", "nonsense"): "error: --database-url 'nonsense' is not a database URL",
        ("--database-url", "sqlite:///x.db"): "the demo needs a PostgreSQL server",
        ("--database-url", "postgresql+psycopg://postgres@127.0.0.1:1/test"): "cannot connect: ",
    }
    for args, said in refusals.items():
        result = demo(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0], (args, result.stderr)
        assert not (tmp_path / "demo").exists()  # refused before anything started
    assert running_under(tmp_path) == []
