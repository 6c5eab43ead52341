"""The whole pipeline for the fault suite, built from real parts, and the measurements the fault table shows.

- A private embedded stack with ``s3://`` storage (a local moto S3 server), so the broker can be restarted with its
  data, committed offsets and producer state intact; a private ``redis-server`` for the tracker.
- An authority publishing person changes and deaths through the SDK (``Publisher``) at a steady rate, its truth
  kept by the demo's ``Truth``; the distributor, three subscribers (hrss and tax into SQLite, housing_fund into
  PostgreSQL through a TCP proxy the test can cut) and the tracker, each its own ``onceonly`` process.
- Every holder table has triggers writing each row insert or update to ``fault_apply_log``, in the same transaction
  as the apply: "applied twice" is counted by the database itself, not by our code.
- Convergence is the demo's check: the authority's changes replayed through each holder's agreement
  (``onceonly.demo.expected``), compared field by field with the store.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
import yaml
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from connectors.sinks.config import SqlSinkConfig
from onceonly.catalog import schema_dir
from onceonly.demo.city import DISTRICTS, Person, seed_city
from onceonly.demo.holders import create_store, holder_agreement, sqlite_store, subscriber_config
from onceonly.demo.truth import Truth
from onceonly.kafka import confluent_config, confluent_producer_config
from onceonly.publisher import BatchFailed, Publisher, PublishFailed
from onceonly.settings import Settings
from onceonly.stack.components import find_redis_server, redis_ready
from onceonly.stack.process import Managed, spawn, stop, wait_until
from onceonly.standard import RegistryClient, RegistryError, RegistryUnavailable, Serde, declared_subjects
from onceonly.standard.identity import upgrade_id15
from onceonly.testing import process_env
from services.distributor import Agreement, Agreements, InterestClient, load_agreements

HOLDERS = ("hrss", "tax", "housing_fund")  # hrss and tax keep SQLite stores, housing_fund PostgreSQL
POSTGRES_HOLDER = "housing_fund"
TAX_DISTRICT = "110105"
FINISHED = ("applied", "skipped_duplicate", "skipped_stale")  # a receipt saying the holder is done with a change


# -- the parts ---------------------------------------------------------------------------------------------------


class Service:
    """One ``onceonly`` command as its own process (distributor, subscriber, tracker), output appended to ``log``.

    Supervised as the deployment supervises it (compose ``restart: unless-stopped``, a Kubernetes Deployment): an
    exit the test did not cause is recorded in ``exits`` and the process is started again."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits: list[str] = []  # exits nobody asked for, with the last line the process wrote
        self._out: IO[bytes] | None = None
        self._planned_down = True
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._out is not None:
            self._out.close()
        self._out = self.log.open("ab")
        cmd = [sys.executable, "-m", "onceonly", *self.args]
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.cwd
        )
        self._planned_down = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or committed."""
        with self._lock:
            assert self.proc is not None
            self._planned_down = True
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def supervise(self) -> None:
        """Start the process again if it exited by itself."""
        with self._lock:
            if self._planned_down or self.proc is None or self.proc.poll() is None:
                return
            self.exits.append(f"{self.name} exited with {self.proc.returncode}: {self._last_error()}")
            self._start()

    def stop(self, grace: float = 10.0) -> None:
        with self._lock:
            self._planned_down = True
            proc = self.proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if self._out is not None:
                self._out.close()
                self._out = None

    def _last_error(self) -> str:
        lines = [line for line in self.tail(200).splitlines() if "ERROR" in line or "Error" in line]
        return lines[-1][-300:] if lines else self.tail(1)[-300:]

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class PrivateRedis:
    """A ``redis-server`` of this suite's own (never the machine's 6379 one), with an append-only file, so that
    stopping and starting it keeps what the tracker wrote (the stack's Redis runs without persistence)."""

    def __init__(self, folder: Path, port: int) -> None:
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError("no redis-server found")
        self.folder = folder
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
        self.cmd += ["--appendfsync", "always", "--dir", str(folder)]
        self.managed: Managed | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.managed = spawn("redis", self.cmd, self.url, self.folder / "redis.log")
        if not wait_until(lambda: redis_ready(self.url), 15, self.managed):
            raise RuntimeError(f"the private redis-server did not come up on port {self.port}")

    def stop(self) -> None:
        if self.managed is not None:
            stop(self.managed)
            self.managed = None


# -- the authority and its workload --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    """One change the authority recorded, and the holders whose agreements entitle them to it."""

    change: dict[str, Any]
    entity_type: str
    key: str
    version: int
    holders: tuple[str, ...]


def _entitled(agreement: Agreement, change: dict[str, Any], interest: set[str] | None) -> bool:
    """The distributor's published scope rules (as ``onceonly.demo.expected`` replays them): entity type granted,
    interest registered (``interest``: the holder's registrations, carried over an identifier upgrade here),
    condition met before or after the change."""
    if change["entity_type"] not in agreement.grants:
        return False
    key, old = str(change["entity_key"]), change.get("supersedes_key")
    if interest is not None and key not in interest and old not in interest:
        return False
    condition = agreement.condition
    if condition is not None and not any(condition.matches(change.get(side)) for side in ("after", "before")):
        return False
    if interest is not None and old and old in interest:
        interest.add(key)
    return True


class Authority:
    """Public security and health recording changes once: their truth, the log in recorded order, and the SDK."""

    def __init__(self, settings: Settings, agreements: dict[str, Agreement], people: int, seed: int = 2024) -> None:
        self.settings = settings
        self.agreements = agreements
        self.truth = Truth()
        self.city = seed_city(people, seed=seed)
        self.rng = random.Random(seed)
        self.log: list[Logged] = []
        self.interest: set[str] = set()  # housing_fund's registrations, as first registered
        self._scope: dict[str, set[str]] = {}  # per interest holder, as upgrades carried it over
        self.dead: set[str] = set()
        self.reserved: set[str] = set()
        self.lock = threading.Lock()
        self.publisher = Publisher(settings)
        self.publish_retries = 0

    def register_interest(self, share: int = 3) -> list[str]:
        keys = [p.id_number for p in self.city.people[::share]]
        with InterestClient(self.settings) as client:
            for key in keys:
                client.register(POSTGRES_HOLDER, "person", key, reason="depositor")
        self.interest = set(keys)
        self._scope = {h: set(keys) for h, a in self.agreements.items() if a.interest == "interest"}
        return keys

    def record(self, change: dict[str, Any]) -> dict[str, Any]:
        """Append a change (already made by ``truth.change``) to the log, with who must receive it."""
        holders = tuple(h for h, a in self.agreements.items() if _entitled(a, change, self._scope.get(h)))
        self.log.append(
            Logged(change, change["entity_type"], change["entity_key"], change["authority_version"], holders)
        )
        return change

    def registrations(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                self.record(self.truth.change("person", p.id_number, p.record(), "registered"))
                for p in self.city.people
            ]

    def _living(self) -> list[Person]:
        return [p for p in self.city.people if p.id_number not in self.dead and p.id_number not in self.reserved]

    def next_changes(self, n: int) -> list[dict[str, Any]]:
        """``n`` changes of distinct living people: mostly moves (in and out of the tax office's district), some
        name corrections, identifier upgrades (15 to 18 digits) and deaths. The people stay reserved until
        ``release``: an injected fault never races the workload for the same person."""
        with self.lock:
            out = []
            for p in self.rng.sample(self._living(), k=min(n, len(self._living()))):
                roll = self.rng.random()
                if roll < 0.04 and len(p.id_number) == 15:
                    out.append(self._upgrade(p))
                elif roll < 0.05:
                    out.append(self._death(p))
                elif roll < 0.12:
                    p.name = p.name.split("（")[0] + f"（更正{self.rng.randint(1, 99)}）"
                    change = self.truth.change("person", p.id_number, p.record(), "corrected", correction=True)
                    out.append(self.record(change))
                else:
                    out.append(self._move(p))
                self.reserved.add(p.id_number)  # after an upgrade, the new number
            return out

    def release(self, changes: Iterable[dict[str, Any]]) -> None:
        with self.lock:
            for change in changes:
                self.reserved.discard(change["entity_key"])

    def _move(self, p: Person, avoid: str | None = None) -> dict[str, Any]:
        """A move to another district (never to ``avoid``); a third of them into the tax office's district."""
        choices = [d for d in DISTRICTS if d not in (p.district_code, avoid)]
        to_tax = self.rng.random() < 0.3 and TAX_DISTRICT in choices  # the tax office's district: in and out of it
        p.district_code = TAX_DISTRICT if to_tax else self.rng.choice(choices)
        p.address = self.city.address(p.district_code)
        return self.record(self.truth.change("person", p.id_number, p.record(), "moved_in"))

    def _upgrade(self, p: Person) -> dict[str, Any]:
        old, p.id_number = p.id_number, upgrade_id15(p.id_number)
        return self.record(self.truth.change("person", p.id_number, p.record(), "identifier_upgraded", supersedes=old))

    def _death(self, p: Person) -> dict[str, Any]:
        self.dead.add(p.id_number)
        record = {
            "id_number": p.id_number,
            "certificate_no": f"D{self.city.serial():09d}",
            "date_of_death": date.today(),
            "place": None,
        }
        return self.record(self.truth.change("death", p.id_number, record, "died"))

    def publish(self, changes: Sequence[dict[str, Any]], stop: threading.Event | None = None) -> None:
        """Hand changes to the SDK; what the broker did not acknowledge is sent again (same event ids), as an
        authority's adapter does, until all of it is acknowledged."""
        while True:
            try:
                self.publisher.publish_many(changes)
                return
            except (BatchFailed, PublishFailed):
                self.publish_retries += 1
                if stop is not None and stop.is_set():
                    return
                time.sleep(0.5)

    def out_of_order(self, *, leaving: bool = False) -> tuple[str, int, int]:
        """Two successive moves of one person, published newer first: the older one arrives late. Returns the
        older one's event id and where it landed (partition, offset).

        Neither move touches the tax office's district, unless ``leaving``: then the person lives there, the older
        move takes them out of it (the tax office's last news of them) and the newer one between two others."""
        with self.lock:
            people = [p for p in self._living() if (p.district_code == TAX_DISTRICT) == leaving]
            assert people, "nobody to move"
            p = self.rng.choice(people)
            self.reserved.add(p.id_number)
            older, newer = self._move(p, avoid=TAX_DISTRICT), self._move(p, avoid=TAX_DISTRICT)
        try:
            self.publisher.publish(newer)
            late = self.publisher.publish(older)
        finally:
            self.release([older])
        return late.event_id, late.partition, late.offset

    def snapshot(self) -> list[Logged]:
        with self.lock:
            return list(self.log)

    def close(self) -> None:
        self.publisher.close(5.0)


class Workload:
    """The authority's steady stream of changes (``rate`` per second) in a thread, which the test pauses to check
    convergence against a log that no longer moves."""

    def __init__(self, authority: Authority, rate: float, tick: float = 0.5) -> None:
        self.authority = authority
        self.per_tick = max(1, round(rate * tick))
        self.tick = tick
        self._stop = threading.Event()
        self._running = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)
        self._thread.start()

    def resume(self) -> None:
        self._idle.clear()
        self._running.set()

    def pause(self, timeout: float = 120.0) -> None:
        """Stop generating; returns once every change generated so far is acknowledged by the broker."""
        self._running.clear()
        if not self._idle.wait(timeout):
            raise AssertionError(f"the workload's last batch was not acknowledged within {timeout:.0f}s")
        if self.error is not None:
            raise AssertionError(f"the workload failed: {self.error!r}") from self.error

    def close(self) -> None:
        self._stop.set()
        self._running.set()
        self._thread.join(30)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            if not self._running.is_set():
                self._idle.set()
                self._running.wait(0.2)
                next_at = time.monotonic()
                continue
            try:
                changes = self.authority.next_changes(self.per_tick)
                self.authority.publish(changes, self._stop)
                self.authority.release(changes)
            except BaseException as e:
                self.error = e
                self._running.clear()
                continue
            next_at += self.tick
            time.sleep(max(0.0, next_at - time.monotonic()))


# -- reading topics ---------------------------------------------------------------------------------------------


READER = {"group.id": "fault-reader", "enable.auto.commit": False, "auto.offset.reset": "earliest"}


def ends(settings: Settings, topic: str) -> dict[int, int]:
    """Partition -> an offset at or before the end of a catalog topic (on Tansu, ListOffsets answers the newest
    batch's base offset + 1, which is never past the end): reading from here misses nothing written later."""
    physical = settings.topic(topic)
    consumer = Consumer(confluent_config(settings, **READER))
    try:
        parts = consumer.list_topics(physical, timeout=10).topics[physical].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(physical, p), timeout=10)[1] for p in parts}
    finally:
        consumer.close()


def read_topic(
    settings: Settings, topic: str, quiet: float = 0.7, timeout: float = 20.0, since: dict[int, int] | None = None
) -> list[Message]:
    """Every record of a catalog topic (all partitions, from the start or from ``since``), until the topic is quiet."""
    physical = settings.topic(topic)
    consumer = Consumer(confluent_config(settings, **READER))
    try:
        parts = consumer.list_topics(physical, timeout=10).topics[physical].partitions
        consumer.assign([TopicPartition(physical, p, (since or {}).get(p, 0)) for p in parts])
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < quiet:
            batch = [m for m in consumer.consume(1000, timeout=0.2) if m.error() is None]
            if batch:
                got.extend(batch)
                last = time.monotonic()
        return got
    finally:
        consumer.close()


def produce_raw(settings: Settings, topic: str, key: bytes | None, value: bytes) -> tuple[int, int]:
    """Write one record as is (no SDK, no validation); returns where the broker put it (partition, offset)."""
    producer = Producer(confluent_producer_config(settings))
    landed: list[tuple[int, int]] = []

    def report(err: Any, msg: Message) -> None:
        if err is None:
            landed.append((msg.partition() or 0, msg.offset() or 0))

    producer.produce(settings.topic(topic), key=key, value=value, on_delivery=report)
    if producer.flush(30) != 0 or not landed:
        raise AssertionError(f"{topic}: the injected record was not acknowledged")
    return landed[0]


def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """Partition -> a consumer group's committed offset on one catalog topic (0 when none)."""
    consumer = Consumer(confluent_config(settings, **{"group.id": settings.topic_prefix + group}))
    try:
        physical = settings.topic(topic)
        parts = consumer.list_topics(physical, timeout=10).topics[physical].partitions
        offsets = consumer.committed([TopicPartition(physical, p) for p in parts], timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in offsets}
    finally:
        consumer.close()


def committed(settings: Settings, group: str, topic: str) -> int:
    """The sum of a consumer group's committed offsets on one catalog topic."""
    return sum(committed_offsets(settings, group, topic).values())


@dataclass(frozen=True)
class Receipt:
    holder: str
    event_id: str
    outcome: str
    entity_type: str
    entity_key: str
    version: int
    at_ms: int


class ReceiptFollower:
    """Reads ``receipts`` from the start without a consumer group, for the whole run (broker restart included)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.serde = Serde(RegistryClient(settings.registry_url))
        self.receipts: list[Receipt] = []
        self.undecodable = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receipts", daemon=True)
        self._thread.start()

    def all(self) -> list[Receipt]:
        with self._lock:
            return list(self.receipts)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        topic = self.settings.topic("receipts")
        consumer = Consumer(confluent_config(self.settings, **READER))
        # A record read again (after a reset to the earliest offset) is the same bytes at the same place: count
        # it once. Two different records at one offset (a broker bug) are both kept.
        seen: set[tuple[int, int, bytes]] = set()
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, 0) for p in parts])
            while not self._stop.is_set():
                got = []
                for m in consumer.consume(1000, timeout=0.2):
                    if m.error() is not None:
                        continue
                    where = (m.partition() or 0, m.offset() or 0, m.value() or b"")
                    if where in seen:
                        continue
                    seen.add(where)
                    r = self._decode(m.value())
                    if r is None:
                        continue
                    at = r["applied_at"]
                    at_ms = int(at.timestamp() * 1000) if hasattr(at, "timestamp") else int(at)
                    got.append(
                        Receipt(
                            r["holder"],
                            r["event_id"],
                            r["outcome"],
                            r["entity_type"],
                            r["entity_key"],
                            int(r["authority_version"] or 0),
                            at_ms,
                        )
                    )
                if got:
                    with self._lock:
                        self.receipts.extend(got)
        finally:
            consumer.close()

    def _decode(self, value: bytes | None) -> dict[str, Any] | None:
        """The receipt; while the registry does not answer, ask again (a receipt is never skipped for that)."""
        while True:
            try:
                return dict(self.serde.decode(value).record)
            except (RegistryUnavailable, RegistryError):
                if self._stop.wait(0.5):
                    return None
            except Exception:
                self.undecodable += 1
                return None


def coverage(receipts: Iterable[Receipt], until_ms: int | None = None) -> dict[tuple[str, str, str], int]:
    """(holder, entity type, key) -> the newest version the holder finished with (applied or skipped as already
    held), counting only receipts written by ``until_ms``."""
    out: dict[tuple[str, str, str], int] = {}
    for r in receipts:
        if r.outcome in FINISHED and (until_ms is None or r.at_ms <= until_ms):
            k = (r.holder, r.entity_type, r.entity_key)
            if r.version > out.get(k, -1):
                out[k] = r.version
    return out


def unfinished(log: Iterable[Logged], cover: dict[tuple[str, str, str], int]) -> list[tuple[str, Logged]]:
    """(holder, change) pairs the holder is entitled to and has not finished with."""
    return [(h, c) for c in log for h in c.holders if cover.get((h, c.entity_type, c.key), -1) < c.version]


# -- the holders' stores --------------------------------------------------------------------------------------------

APPLY_LOG_SQLITE = [
    "PRAGMA journal_mode=WAL",
    "CREATE TABLE fault_apply_log (n INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT, event_id TEXT)",
]
APPLY_LOG_POSTGRES = [
    "CREATE TABLE fault_apply_log (n BIGSERIAL PRIMARY KEY, tbl TEXT, event_id TEXT)",
    """CREATE FUNCTION fault_log_apply() RETURNS trigger AS $$
       BEGIN INSERT INTO fault_apply_log(tbl, event_id) VALUES (TG_TABLE_NAME, NEW.onceonly_event_id); RETURN NEW;
       END $$ LANGUAGE plpgsql""",
]


def count_applies(url: str, tables: Iterable[str]) -> None:
    """Make the store log every row insert and update (the database's own count of applies)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                for statement in APPLY_LOG_SQLITE:
                    conn.exec_driver_sql(statement)
                for t in tables:
                    for event in ("INSERT", "UPDATE"):
                        conn.exec_driver_sql(
                            f"CREATE TRIGGER fault_{t}_{event.lower()} AFTER {event} ON {t} BEGIN "
                            f"INSERT INTO fault_apply_log(tbl, event_id) VALUES ('{t}', NEW.onceonly_event_id); END"
                        )
            else:
                for statement in APPLY_LOG_POSTGRES:
                    conn.exec_driver_sql(statement)
                for t in tables:
                    conn.exec_driver_sql(
                        f"CREATE TRIGGER fault_{t}_apply AFTER INSERT OR UPDATE ON {t} "
                        "FOR EACH ROW EXECUTE FUNCTION fault_log_apply()"
                    )
    finally:
        engine.dispose()


def watermarks(url: str) -> dict[tuple[str, str], int]:
    """(entity type, key) -> the version the holder's sink recorded as applied (its own watermark table)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT entity_type, entity_key, authority_version FROM onceonly_watermarks")
            return {(str(t), str(k)): int(v) for t, k, v in rows}
    finally:
        engine.dispose()


def applied_twice(url: str) -> dict[str, int]:
    """Event id -> how many times its row was written, for every event written more than once."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT event_id, count(*) FROM fault_apply_log GROUP BY event_id HAVING count(*) > 1"
            )
            return {str(e): int(n) for e, n in rows}
    finally:
        engine.dispose()


# -- the fault table -------------------------------------------------------------------------------------------------


@dataclass
class FaultRow:
    """One line of the fault table."""

    fault: str
    in_flight: int
    lost: int
    applied_twice: int
    outage_s: float
    recover_s: float | None
    dead_letters: str = "-"
    crashes: int = 0  # services that exited by themselves during the phase (started again by the supervisor)
    note: str = ""


@dataclass
class Verdict:
    """Where the pipeline stands against the authority's log."""

    unfinished: list[tuple[str, Logged]] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)  # the authority's own changes a holder dead-lettered
    differences: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    untracked: int = 0  # receipts the tracker has not folded into Redis
    diagnosis: str = ""

    @property
    def lost(self) -> int:
        return len(self.unfinished) + len(self.dead_lettered) + sum(len(d) for d in self.differences.values())

    @property
    def converged(self) -> bool:
        return self.lost == 0 and not self.problems and self.untracked == 0

    def describe(self) -> str:
        parts = [f"{h} has not finished {c.entity_type} {c.key} v{c.version}" for h, c in self.unfinished[:5]]
        parts += [f"dead-lettered: {d}" for d in self.dead_lettered[:5]]
        parts += [f"{h}: {d}" for h, ds in self.differences.items() for d in ds[:5]]
        parts += self.problems
        if self.untracked:
            parts.append(f"{self.untracked} receipts not in Redis")
        if self.diagnosis:
            parts.insert(0, self.diagnosis)
        return "; ".join(parts) or "converged"


@dataclass(frozen=True)
class Expected:
    """A record injected on purpose that must end on a dead-letter topic with a reason."""

    dlq: str
    value: bytes
    error_class: str  # the exception class name the dead letter's header must name (a suffix)


def text(value: str | bytes | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value or ""


def value_of(message: Message) -> bytes:
    """A record's value (the records this suite copies always have one)."""
    value = message.value()
    assert value is not None, f"{message.topic()}[{message.partition()}]@{message.offset()} has no value"
    return value


def dead_letter_problems(settings: Settings, wanted: Sequence[Expected]) -> list[str]:
    """What is not (yet) on its dead-letter topic, or is there without the reason."""
    problems = []
    for topic in sorted({w.dlq for w in wanted}):
        found = read_topic(settings, topic, quiet=0.3)
        for w in (w for w in wanted if w.dlq == topic):
            match = [m for m in found if m.value() == w.value]
            if not match:
                problems.append(f"{topic}: no dead letter for the injected {w.error_class}")
                continue
            raw = match[0].headers() or []
            headers = {k: text(v) for k, v in (raw.items() if isinstance(raw, dict) else raw)}
            reason = headers.get("__connect.errors.exception.message", "")
            cls = headers.get("__connect.errors.exception.class.name", "")
            if not reason or not cls.endswith(w.error_class):
                problems.append(f"{topic}: dead letter says {cls!r}: {reason!r}, expected a {w.error_class} reason")
    return problems


def holder_agreements(agreements: Agreements) -> dict[str, Agreement]:
    return {h: holder_agreement(agreements, h) for h in HOLDERS}


def write_config(path: Path, agreements: dict[str, Agreement], stores: dict[str, str], batch_size: int) -> None:
    """One onceonly.yaml: the holders' agreements (from schemas/agreements.yaml) and their subscribers."""
    reference = yaml.safe_load((schema_dir() / "agreements.yaml").read_text(encoding="utf-8"))["agreements"]
    wanted = {a.id for a in agreements.values()}
    subscribers = {}
    for holder, agreement in agreements.items():
        config = subscriber_config(agreement, stores[holder], batch_size=batch_size)
        entry = config.model_dump(mode="json", by_alias=True, exclude={"department"})
        entry["retry_backoff_max"] = 1.0
        subscribers[holder] = entry
    data = {"agreements": [a for a in reference if a["id"] in wanted], "subscribers": subscribers}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def make_stores(folder: Path, postgres_url: str, agreements: dict[str, Agreement]) -> dict[str, SqlSinkConfig]:
    """Each holder's tables as the demo lays them out, plus the apply log; returns the sink configs (direct URLs)."""
    configs: dict[str, SqlSinkConfig] = {}
    for holder, agreement in agreements.items():
        url = postgres_url if holder == POSTGRES_HOLDER else sqlite_store(folder, holder)
        sink = subscriber_config(agreement, url).sink
        assert isinstance(sink, SqlSinkConfig)
        create_store(url, sink)
        count_applies(url, [m.table for m in sink.table_mappings().values()])
        configs[holder] = sink
    return configs


def register_schemas(settings: Settings) -> None:
    client = RegistryClient(settings.registry_url)
    for declared in declared_subjects(settings):
        client.register(declared.subject, declared.schema)


def load_reference_agreements() -> dict[str, Agreement]:
    return holder_agreements(load_agreements(schema_dir() / "agreements.yaml"))


def service_env(settings: Settings, redis_url: str, state: Path) -> dict[str, str]:
    env = process_env(settings, ONCEONLY_REDIS_URL=redis_url, ONCEONLY_STATE_DIR=str(state))
    env.update(ONCEONLY_LOG_FORMAT="text", PYTHONUNBUFFERED="1")
    env.pop("ONCEONLY_DATABASE_URL", None)
    return env


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> float:
    """Seconds it took ``check`` to hold; fails after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
