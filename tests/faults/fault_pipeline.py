"""One pipeline per test module: started once, faults run against it one after another.

Each phase: the workload runs, the fault hits and is healed while it runs, the workload pauses (so the target no
longer moves) and the clock runs until every holder holds the authority's state field by field, every change it
is entitled to has a receipt, every injected record is on its dead-letter topic with a reason, and the tracker
has every receipt in Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import sqlalchemy as sa
from fault_kit import (
    HOLDERS,
    POSTGRES_HOLDER,
    Authority,
    Expected,
    FaultRow,
    PrivateRedis,
    ReceiptFollower,
    Service,
    Verdict,
    Workload,
    applied_twice,
    committed,
    committed_offsets,
    coverage,
    dead_letter_problems,
    load_reference_agreements,
    make_stores,
    read_topic,
    register_schemas,
    service_env,
    unfinished,
    wait_for,
    watermarks,
    write_config,
)
from sqlalchemy.engine import make_url
from subscriber.subscriber_kit import TcpProxy

from connectors.sinks.config import SqlSinkConfig
from onceonly.demo.expected import differences, expected_tables
from onceonly.settings import Settings
from onceonly.stack import EmbeddedStack, StackOptions
from onceonly.stack.cluster import stack_settings
from onceonly.stack.process import Managed, free_port
from onceonly.standard import RegistryClient, Serde
from onceonly.topics import apply_topics

PEOPLE = 240
RATE = 50.0  # changes per second while the workload runs
BATCH = 200  # subscriber and distributor batch size

Check = Callable[[], list[str]]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Pipeline:
    """Stack (broker on s3://, registry), private Redis, PostgreSQL database behind a proxy, the services, the
    authority's workload, and the receipts follower."""

    def __init__(self, folder: Path, postgres_admin_url: str) -> None:
        self.folder = folder
        self.postgres_admin_url = postgres_admin_url
        self.agreements = load_reference_agreements()
        self.stack = EmbeddedStack(folder / "stack")
        self.redis = PrivateRedis(folder / "redis", free_port())
        self.db_name = f"oo_faults_{uuid.uuid4().hex[:8]}"
        self.direct: dict[str, str] = {}
        self.sinks: dict[str, SqlSinkConfig] = {}
        self.services: dict[str, Service] = {}
        self.proxy: TcpProxy | None = None
        self.expected_dead: list[Expected] = []
        self.checks: list[Check] = []
        self.settings: Settings | None = None
        self.authority: Authority | None = None
        self.workload: Workload | None = None
        self.follower: ReceiptFollower | None = None
        self._db_created = False
        self.healed_at = 0.0  # when the last fault ended (time.monotonic)
        self._closing = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)

    def _supervise(self) -> None:
        while not self._closing.wait(0.5):
            for service in self.services.values():
                service.supervise()

    def exits(self) -> list[str]:
        return [e for s in self.services.values() for e in s.exits]

    # -- start and stop ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.redis.start()
        with _env(ONCEONLY_REDIS_URL=self.redis.url):  # the stack must not start (or reuse) another Redis
            ports = StackOptions(broker_port=free_port(), registry_port=free_port(), storage="s3", s3_port=free_port())
            env, _ = self.stack.up(ports)
        settings = stack_settings(env, redis_url=self.redis.url, topic_prefix=f"f{uuid.uuid4().hex[:6]}.")
        self.settings = settings
        apply_topics(settings, departments=list(HOLDERS))
        register_schemas(settings)
        self._postgres()
        sinks = make_stores(self.folder, self.direct[POSTGRES_HOLDER], self.agreements)
        self.sinks = dict(sinks)
        for holder, sink in sinks.items():
            self.direct[holder] = sink.url
        # The subscriber reaches PostgreSQL through a TCP proxy: "PostgreSQL down" is the proxy cut, because the
        # machine's PostgreSQL cluster is shared with other engineers and must never be stopped by a test.
        real = make_url(self.direct[POSTGRES_HOLDER])
        self.proxy = TcpProxy((real.host or "127.0.0.1", real.port or 5432))
        stores = dict(self.direct)
        stores[POSTGRES_HOLDER] = real.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)
        config = self.folder / "onceonly.yaml"
        write_config(config, self.agreements, stores, BATCH)
        env = service_env(settings, self.redis.url, self.folder / "no-stack")
        logs = self.folder / "logs"
        logs.mkdir(exist_ok=True)
        distribute = ["distributor", "run", str(config), "--batch-size", str(BATCH)]
        self.services["distributor"] = Service("distributor", distribute, env, logs / "distributor.log", self.folder)
        for holder in HOLDERS:
            args = ["subscriber", "run", str(config), "--department", holder]
            self.services[holder] = Service(holder, args, env, logs / f"{holder}.log", self.folder)
        self.services["tracker"] = Service("tracker", ["tracker", "run"], env, logs / "tracker.log", self.folder)
        for service in self.services.values():
            service.start()
        self._supervisor.start()
        self.follower = ReceiptFollower(settings)
        self.authority = Authority(settings, self.agreements, PEOPLE)
        registered = self.authority.register_interest()
        # Interest first, so the holder that follows only its depositors receives their registrations as changes.
        wait_for(lambda: committed(settings, "distributor", "interest") >= len(registered), 90, "interest registered")
        self.authority.publish(self.authority.registrations())
        self.workload = Workload(self.authority, RATE)
        took, verdict = self.converge(120)
        if took is None:
            raise RuntimeError(f"the pipeline did not converge on its first registrations: {verdict.describe()}")

    def _postgres(self) -> None:
        admin = sa.create_engine(self.postgres_admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{self.db_name}"')
        finally:
            admin.dispose()
        self._db_created = True
        self.direct[POSTGRES_HOLDER] = self.postgres_admin_url.rsplit("/", 1)[0] + f"/{self.db_name}"

    def close(self) -> None:
        self._closing.set()
        closing: list[Callable[[], object]] = [
            *(part.close for part in (self.workload, self.authority) if part is not None),
            *(s.stop for s in self.services.values()),
            *(part.close for part in (self.follower,) if part is not None),
            *(part.down for part in (self.proxy,) if part is not None),
            self._kill_broker,
            self.stack.down,
            self.redis.stop,
            self._drop_postgres,
        ]
        for step in closing:
            with contextlib.suppress(Exception):
                step()

    def _kill_broker(self) -> None:
        """At the end nothing needs the broker's data: SIGKILL spares the 5 s Tansu takes to stop on SIGTERM."""
        for part in json.loads(self.stack.state_file.read_text())["components"]:
            broker = Managed.from_json(part)
            if broker.name == "broker" and broker.alive():
                os.kill(broker.pid, signal.SIGKILL)

    def _drop_postgres(self) -> None:
        if not self._db_created:
            return
        admin = sa.create_engine(self.postgres_admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        finally:
            admin.dispose()

    # -- looking -------------------------------------------------------------------------------------------------
    @property
    def s(self) -> Settings:
        assert self.settings is not None
        return self.settings

    @property
    def a(self) -> Authority:
        assert self.authority is not None
        return self.authority

    @property
    def receipts(self) -> ReceiptFollower:
        assert self.follower is not None
        return self.follower

    def check(self, full: bool = False) -> Verdict:
        """The pipeline against the authority's log; with ``full``, every measure even if an earlier one failed."""
        log = self.a.snapshot()
        receipts = self.receipts.all()
        verdict = Verdict(unfinished=unfinished(log, coverage(receipts)))
        ours = {c.change["event_id"] for c in log}
        verdict.dead_lettered = [
            f"{r.holder} {r.entity_type} {r.entity_key} v{r.version}"
            for r in receipts
            if r.outcome == "dead_lettered" and r.event_id in ours
        ]
        if (verdict.unfinished or verdict.dead_lettered) and not full:
            return verdict
        changes = [c.change for c in log]
        for holder, agreement in self.agreements.items():
            sink = self.sinks[holder]
            expected = expected_tables(agreement, sink, changes, self.a.interest)
            found = differences(expected, self.direct[holder], limit=100_000)
            if found:
                verdict.differences[holder] = found
        if verdict.differences and not full:
            return verdict
        verdict.problems = dead_letter_problems(self.s, self.expected_dead)
        verdict.problems += [p for check in self.checks for p in check()]
        if self.receipts.undecodable:
            verdict.problems.append(f"{self.receipts.undecodable} records on the receipts topic do not decode")
        if verdict.problems and not full:
            return verdict
        verdict.untracked = self.untracked()
        return verdict

    def untracked(self) -> int:
        """Receipts (with an event id) the tracker has not folded into Redis."""
        wanted = [r for r in self.receipts.all() if r.event_id]
        try:
            client = redis.Redis.from_url(self.redis.url, socket_timeout=5)
            pipe = client.pipeline(transaction=False)
            for r in wanted:
                pipe.hexists(f"{self.s.topic_prefix}receipt:{r.event_id}", r.holder)
            return sum(1 for present in pipe.execute() if not present)
        except redis.RedisError:
            return len(wanted)

    def applied_twice(self) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """(holder, event id) written more than once per the stores' apply logs, and per 'applied' receipts."""
        in_db = {(h, e) for h in HOLDERS for e in applied_twice(self.direct[h])}
        counts = Counter((r.holder, r.event_id) for r in self.receipts.all() if r.outcome == "applied")
        return in_db, {k for k, n in counts.items() if n > 1}

    def converge(self, timeout: float, stall: float = 20.0) -> tuple[float | None, Verdict]:
        """Seconds until the pipeline converged, and the last verdict; None when it did not within ``timeout``, or
        when no receipt arrived for ``stall`` seconds while something was still missing (nothing more will come)."""
        started = time.monotonic()
        receipts, moved = len(self.receipts.all()), time.monotonic()
        while True:
            verdict = self.check()
            if os.environ.get("FAULT_DEBUG"):  # watch a slow recovery: FAULT_DEBUG=1 pytest -s tests/faults
                print(f"  {time.monotonic() - started:.1f}s: {verdict.describe()[:150]}")
            if verdict.converged:
                return time.monotonic() - started, verdict
            if len(self.receipts.all()) != receipts:
                receipts, moved = len(self.receipts.all()), time.monotonic()
            if time.monotonic() - started > timeout or time.monotonic() - moved > stall:
                verdict = self.check(full=True)
                verdict.diagnosis = self.diagnose(verdict)
                return None, verdict
            if len(self.exits()) > 10:
                raise AssertionError("services keep exiting by themselves: " + " | ".join(self.exits()[-3:]))
            time.sleep(0.5)

    # -- one fault -------------------------------------------------------------------------------------------------
    def phase(
        self,
        fault: str,
        act: Callable[[], None],
        *,
        warmup: float = 1.0,
        dead: Sequence[Expected] = (),
        checks: list[Check] | None = None,
        timeout: float = 150.0,  # recoveries of 50-76 s were measured on a busy day; only a failure waits longer
        stall: float = 20.0,
    ) -> tuple[FaultRow, Verdict]:
        """Run the workload, ``act`` (the fault and its healing), pause the workload, wait for convergence."""
        assert self.workload is not None
        db_before, receipts_before = self.applied_twice()
        exits_before = len(self.exits())
        self.workload.resume()
        time.sleep(warmup)
        hit_ms, hit = now_ms(), time.monotonic()
        act()
        healed = self.healed_at = time.monotonic()
        self.workload.pause()
        self.expected_dead = list(dead)
        self.checks = list(checks or [])  # read after ``act``: it may add checks about what it injected
        recover, verdict = self.converge(timeout - (time.monotonic() - healed), stall)
        recover_s = None if recover is None else time.monotonic() - healed
        log = self.a.snapshot()
        in_flight = {id(c) for _, c in unfinished(log, coverage(self.receipts.all(), until_ms=hit_ms))}
        db_after, receipts_after = self.applied_twice()
        twice = len(db_after - db_before) + len(receipts_after - receipts_before)
        found = len(dead) if verdict.converged else len(dead) - len(dead_letter_problems(self.s, dead))
        row = FaultRow(
            fault=fault,
            in_flight=len(in_flight),
            lost=verdict.lost,
            applied_twice=twice,
            outage_s=healed - hit,
            recover_s=recover_s,
            dead_letters=f"{found}/{len(dead)}" if dead else "-",
            crashes=len(self.exits()) - exits_before,
            note="; ".join([*self.exits()[exits_before:], *([] if verdict.converged else [verdict.describe()[:200]])]),
        )
        return row, verdict

    def diagnose(self, verdict: Verdict) -> str:
        """For a pipeline that did not converge: are the missing receipts on the topic (then the follower missed
        them) or not (then they were never written, or the broker lost them)?"""
        if not verdict.unfinished:
            return ""
        serde = Serde(RegistryClient(self.s.registry_url))
        on_topic = set()
        for m in read_topic(self.s, "receipts", quiet=0.5):
            with contextlib.suppress(Exception):
                r = serde.decode(m.value()).record
                on_topic.add((r["holder"], r["event_id"]))
        there = sum(1 for h, c in verdict.unfinished if (h, c.change["event_id"]) in on_topic)
        return f"{there} of the {len(verdict.unfinished)} missing receipts are on the receipts topic (a fresh read)"

    # -- when something is lost: whose fault ----------------------------------------------------------------------
    def explain(self, verdict: Verdict) -> tuple[list[str], list[str]]:
        """Sort what is missing into records the broker acknowledged and then lost (the evidence is in the topics
        and the stores), and the rest (a fault of the platform). Returns (explained, unexplained)."""
        serde = Serde(RegistryClient(self.s.registry_url))
        where: dict[tuple[str, str], tuple[int, int]] = {}  # (topic, event id) -> (partition, offset)
        ledger: set[tuple[str, str]] = set()
        state: dict[tuple[str, str], int] = {}
        topics = ["change.person", "change.death", "state.person", "state.death", "audit.deliveries"]
        topics += [f"inbox.{h}" for h in HOLDERS]
        with ThreadPoolExecutor(len(topics)) as pool:
            contents = dict(zip(topics, pool.map(lambda t: read_topic(self.s, t, quiet=0.5), topics), strict=True))
        for topic, messages in contents.items():
            for m in messages:
                try:
                    r = serde.decode(m.value()).record
                except Exception:
                    continue
                if topic == "audit.deliveries":
                    if r["outcome"] == "delivered":
                        ledger.add((r["holder"], r["change_event_id"]))
                elif topic.startswith("state."):
                    k = (r["entity_type"], r["entity_key"])
                    state[k] = max(state.get(k, 0), int(r["authority_version"]))
                else:
                    where[(topic, r["event_id"])] = (m.partition() or 0, m.offset() or 0)
        explained: list[str] = []
        unexplained: list[str] = []
        skip: dict[str, set[str]] = {h: set() for h in HOLDERS}  # changes whose loss the broker explains
        marks = {h: watermarks(self.direct[h]) for h in HOLDERS}
        done = {h: committed_offsets(self.s, f"subscriber.{h}", f"inbox.{h}") for h in HOLDERS}
        for holder, c in verdict.unfinished:
            eid, what = c.change["event_id"], f"{c.entity_type} {c.key} v{c.version}"
            inbox = f"inbox.{holder}"
            if (f"change.{c.entity_type}", eid) not in where:
                explained.append(f"{what}: acknowledged to the publisher, missing from change.{c.entity_type}")
                skip[holder].add(eid)
            elif (inbox, eid) not in where:
                if (holder, eid) in ledger or state.get((c.entity_type, c.key), 0) >= c.version:
                    explained.append(f"{what}: distributed to {holder} (ledger or state says so), missing from {inbox}")
                    skip[holder].add(eid)
                else:
                    unexplained.append(f"{what}: never distributed to {holder}")
            else:
                partition, offset = where[(inbox, eid)]
                applied = marks[holder].get((c.entity_type, c.key), 0) >= c.version
                if applied and done[holder].get(partition, 0) > offset:
                    explained.append(f"{what}: applied and committed by {holder}, its receipt missing from receipts")
                else:
                    unexplained.append(f"{what}: in {inbox} but not applied and committed by {holder}")
        log = [c.change for c in self.a.snapshot()]
        for holder in verdict.differences:
            kept = [c for c in log if c["event_id"] not in skip[holder]]
            expected = expected_tables(self.agreements[holder], self.sinks[holder], kept, self.a.interest)
            unexplained += [f"{holder}: {d}" for d in differences(expected, self.direct[holder], limit=100)]
        unexplained += verdict.dead_lettered + verdict.problems
        if verdict.untracked:
            unexplained.append(f"{verdict.untracked} receipts not folded into Redis")
        return explained, unexplained


def record(table: list[FaultRow], result: tuple[FaultRow, Verdict]) -> FaultRow:
    """Put the row in the table (also when the assertions below fail), then hold the fault to the rules."""
    row, verdict = result
    table.append(row)
    assert verdict.converged, f"{row.fault}: not recovered within the time limit: {verdict.describe()}"
    assert row.lost == 0, f"{row.fault}: {row.lost} lost: {verdict.describe()}"
    assert row.applied_twice == 0, f"{row.fault}: {row.applied_twice} changes applied twice"
    return row


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
