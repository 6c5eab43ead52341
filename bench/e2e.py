"""The whole platform end to end, next to the raw client (confluent-kafka) producing and consuming, in one run.

Raw: ``Producer.produce`` of ``--raw-records`` pre-encoded values of a real change's size (idempotent, acks=all,
the platform's producer settings) to a fresh 3-partition topic, and ``Consumer.consume`` of all of them back,
nothing decoded. Platform: the ``Publisher`` publishes person changes, the real distributor (``onceonly
distributor run``) fans each out to ``--holders`` holders (each granted a different set of fields), and one real
subscriber per holder (``onceonly subscriber run``) applies it to the holder's own SQLite database; every service
is its own process, as deployed. A change counts as applied at a holder when that holder's receipt (published
after its transaction committed) says ``applied``; an observer process reads the receipts.

Phases, in order: raw produce and consume; a warm-up (every consumer group joined, every store reached); the
platform at full speed (``--changes`` over ``--keys`` people, published with ``publish_many`` as fast as the
Publisher goes, timed from the first publish to the last apply); the platform at a fixed ``--rate`` for
``--seconds`` (latency = the holder's ``applied_at`` minus the change's ``recorded_at``, stamped as it is
published); five idle seconds. Reported besides the rates: CPU microseconds per change of every process during
the full-speed phase (the part of the result least disturbed by other work on the machine, whose load average is
reported too), subscriber memory (RSS, the largest of the holders) after the warm-up, after each phase and every
five seconds, and with ``--hops`` the two hops of the fixed-rate latency (publish to distributor decision, to
apply).

Prints one JSON line. Example (the defaults take about two minutes on 2 cores):

    python bench/e2e.py --changes 20000 --rate 1000 --seconds 20 --holders 4

Uses ``ONCEONLY_BOOTSTRAP_SERVERS`` / ``ONCEONLY_REGISTRY_URL`` when set, else starts an embedded stack for the
run. Service logs are kept in a temporary folder whose path is printed on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import sqlalchemy as sa
import yaml
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from onceonly import Publisher
from onceonly.kafka import confluent_config, confluent_producer_config
from onceonly.settings import Settings, load_settings
from onceonly.stack.cluster import scratch_cluster
from onceonly.standard import RegistryClient, Serde
from onceonly.standard.identity import id18_check_char
from onceonly.topics import apply_topics

# What each holder's agreement grants of a person (different projections, as in real agreements).
GRANTS = {
    "hrss": ["id_number", "name", "sex", "birth_date", "district_code", "status"],
    "tax": ["id_number", "name", "district_code", "address", "status"],
    "health": ["id_number", "name", "sex", "birth_date", "ethnicity", "address"],
    "civil_affairs": ["id_number", "name", "sex", "household_id", "address", "status"],
    "housing_fund": ["id_number", "name", "address", "status"],
    "market_regulation": ["id_number", "name", "district_code"],
}
ALL_HOLDERS = tuple(GRANTS)
TABLE = """CREATE TABLE ren (sfzhm VARCHAR(18) PRIMARY KEY, xm VARCHAR(40) NOT NULL, xb VARCHAR(1), csrq DATE,
    mz VARCHAR(2), hh VARCHAR(12), xzqh VARCHAR(6), dz VARCHAR(200), zt VARCHAR(10) NOT NULL DEFAULT 'normal',
    bbh BIGINT, sjid VARCHAR(64))"""
COLUMNS = {
    "name": "xm",
    "sex": "xb",
    "birth_date": "csrq",
    "ethnicity": "mz",
    "household_id": "hh",
    "district_code": "xzqh",
    "address": "dz",
}


def mapping(holder: str) -> dict[str, Any]:
    """The holder's table mapping: a column for every granted field (the key and status aside)."""
    return {
        "table": "ren",
        "key_column": "sfzhm",
        "columns": {f: c for f, c in COLUMNS.items() if f in GRANTS[holder]},
        "version_column": "bbh",
        "event_id_column": "sjid",
        "deleted_column": "zt",
        "deleted_value": "cancelled",
        "active_value": "normal",
    }


WARMUP_BASE, FULL_BASE, RATE_BASE = 900_000, 0, 500_000  # key ranges of the phases (distinct people)


def person_id(n: int) -> str:
    """The n-th of a million distinct valid ID numbers."""
    born = date(1960, 1, 1) + timedelta(days=n // 1000)
    first17 = f"110105{born:%Y%m%d}{n % 1000:03d}"
    return first17 + id18_check_char(first17)


def change(n: int, version: int) -> dict[str, Any]:
    key = person_id(n)
    return {
        "entity_type": "person",
        "entity_key": key,
        "authority_version": version,
        "op": "c" if version == 1 else "u",
        "event_type": "registered" if version == 1 else "moved_in",
        "after": {
            "id_number": key,
            "name": "王芳",
            "sex": "2",
            "birth_date": date(int(key[6:10]), int(key[10:12]), int(key[12:14])),
            "ethnicity": "01",
            "household_id": "110105000123",
            "district_code": "110105",
            "address": f"北京市朝阳区建国路{version}号院{n % 100}号楼",
        },
    }


# -- raw client ---------------------------------------------------------------------------------------------------
def raw_rates(settings: Settings, total: int, value: bytes) -> tuple[float, float]:
    """(records/s produced, records/s consumed) by confluent-kafka alone on a fresh 3-partition topic."""
    topic = settings.topic(f"bench.raw.{uuid.uuid4().hex[:6]}")
    admin = AdminClient(confluent_config(settings))
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    keys = [person_id(n).encode() for n in range(total)]
    producer = Producer(confluent_producer_config(settings))
    start = time.perf_counter()
    for key in keys:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    if producer.flush(60) != 0:
        raise SystemExit("raw produce: not every record was acknowledged")
    produce = total / (time.perf_counter() - start)
    consumer = Consumer(
        confluent_config(settings, **{"group.id": f"raw-{uuid.uuid4().hex}", "enable.auto.commit": False})
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    got = 0
    start = time.perf_counter()
    while got < total:
        got += sum(1 for m in consumer.consume(num_messages=10_000, timeout=1.0) if m.error() is None)
    consume = total / (time.perf_counter() - start)
    consumer.close()
    return produce, consume


# -- the services -------------------------------------------------------------------------------------------------
def write_config(folder: Path, holders: tuple[str, ...], batch: int, host: str) -> Path:
    """onceonly.yaml: one agreement and one SQLite subscriber per holder, on subscriber engine ``host``."""
    agreements = [
        {
            "id": f"e2e-{h}",
            "holder": h,
            "purpose": "benchmark",
            "legal_basis": "none (benchmark)",
            "valid_from": "2020-01-01",
            "grants": {"person": GRANTS[h]},
        }
        for h in holders
    ]
    subscribers = {}
    for h in holders:
        url = f"sqlite:///{folder / f'{h}.db'}"
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(TABLE)
        engine.dispose()
        sink = {"kind": "sql", "url": url, "tables": {"person": mapping(h)}}
        subscribers[h] = {"engine": host, "batch_size": batch, "sink": sink}
    path = folder / "onceonly.yaml"
    path.write_text(yaml.safe_dump({"agreements": agreements, "subscribers": subscribers}, allow_unicode=True))
    return path


def service_env(settings: Settings) -> dict[str, str]:
    """The environment of a child process that must see this run's cluster and topic prefix."""
    return {
        **os.environ,
        "ONCEONLY_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "ONCEONLY_REGISTRY_URL": settings.registry_url,
        "ONCEONLY_TOPIC_PREFIX": settings.topic_prefix,
        "ONCEONLY_BROKER_QUIRKS": settings.broker_quirks,
        "ONCEONLY_PROFILE": settings.profile,
    }


@contextmanager
def services(
    settings: Settings, folder: Path, holders: tuple[str, ...], batch: int, engine: str
) -> Iterator[dict[str, Any]]:
    """The distributor and one subscriber per holder, each its own ``onceonly`` process; stopped with SIGTERM."""
    config = write_config(folder, holders, batch, engine)
    env = service_env(settings)
    cli = [sys.executable, "-m", "onceonly"]
    state = ["--state-dir", str(folder)]
    commands = {"distributor": [*cli, "distributor", "run", str(config), "--batch-size", str(batch), *state]}
    for h in holders:
        commands[h] = [*cli, "subscriber", "run", str(config), "--department", h, *state]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, cmd in commands.items():
            log = (folder / f"{name}.log").open("wb")
            procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
        yield procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for name, p in procs.items():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop within 20 s; killing it", file=sys.stderr)
                p.kill()


class Outcome(NamedTuple):
    holder: str
    key: str
    version: int
    outcome: str
    recorded_ms: float
    applied_ms: float


def observe(path: Path, hops: bool) -> None:
    """The observer process: every receipt since the start of ``receipts``, one tab-separated line each in ``path``
    (with ``hops``, also when the distributor decided each delivery, from the ledger: ``at`` is per batch).

    A process of its own, so its decoding neither slows the publisher (the GIL) nor counts as the publisher's CPU.
    """
    settings = load_settings()
    serde = Serde(RegistryClient(settings.registry_url))
    consumer = Consumer(
        confluent_config(settings, **{"group.id": f"e2e-{uuid.uuid4().hex}", "enable.auto.commit": False})
    )
    receipts, ledger = settings.topic("receipts"), settings.topic("audit.deliveries")
    topics = [receipts, ledger] if hops else [receipts]
    found = consumer.list_topics(timeout=10).topics
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in found[t].partitions])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with path.open("a", encoding="utf-8") as out:
        while True:
            lines = []
            for m in consumer.consume(num_messages=10_000, timeout=0.1):
                error = m.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        print(f"observer: {error}", file=sys.stderr)
                    continue
                r = serde.decode(m.value()).record
                if m.topic() == ledger:
                    fields = (r["holder"], r["entity_key"], r["authority_version"], "decided", 0.0, millis(r["at"]))
                else:
                    recorded = millis(r["recorded_at"]) if r["recorded_at"] is not None else 0.0
                    at = millis(r["applied_at"])
                    fields = (r["holder"], r["entity_key"], r["authority_version"], r["outcome"], recorded, at)
                lines.append("\t".join(map(str, fields)) + "\n")
            if lines:
                out.write("".join(lines))
                out.flush()


class Receipts:
    """The observer's findings, read from its file as they come."""

    def __init__(self, settings: Settings, folder: Path, hops: bool) -> None:
        self.path = folder / "receipts.tsv"
        self.path.touch()
        self.decided: dict[tuple[str, str, int], float] = {}
        log = (folder / "observer.log").open("wb")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--observe", str(self.path), *(["--hops"] * hops)]
        self.proc = subprocess.Popen(cmd, env=service_env(settings), stdout=log, stderr=subprocess.STDOUT)
        self.file = self.path.open(encoding="utf-8")
        self.partial = ""

    def fresh(self) -> list[Outcome]:
        """Outcomes that arrived since the last call."""
        text = self.partial + self.file.read()
        *lines, self.partial = text.split("\n")
        out = []
        for line in lines:
            holder, key, version, outcome, recorded, applied = line.split("\t")
            if outcome == "decided":
                self.decided[(holder, key, int(version))] = float(applied)
            else:
                out.append(Outcome(holder, key, int(version), outcome, float(recorded), float(applied)))
        return out

    def wait(
        self, expected: set[tuple[str, int]], holders: tuple[str, ...], timeout: float, alive: Callable[[], None]
    ) -> list[Outcome]:
        """Block until every holder has an outcome for every expected (key, version); returns those outcomes."""
        need = {(h, k, v) for h in holders for k, v in expected}
        mine: list[Outcome] = []
        deadline = time.monotonic() + timeout
        while need:
            for r in self.fresh():
                if (r.key, r.version) in expected:
                    mine.append(r)
                    need.discard((r.holder, r.key, r.version))
            if not need:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {len(need)} (holder, change) pairs have no receipt")
            if self.proc.poll() is not None:
                raise SystemExit(f"the receipt observer exited with {self.proc.returncode}")
            alive()
            time.sleep(0.05)
        return mine

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.file.close()


class Memory:
    """RSS of the service processes, sampled every half second; ``mark`` keeps a named snapshot."""

    def __init__(self, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        self.procs = {name: psutil.Process(p.pid) for name, p in procs.items()}
        self.peak: dict[str, float] = {}
        self.marks: dict[str, dict[str, float]] = {}
        self.series: list[dict[str, float]] = []  # every 5 s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True, name="rss")
        self.thread.start()

    def now(self) -> dict[str, float]:
        out = {}
        for name, p in self.procs.items():
            try:
                out[name] = p.memory_info().rss / 2**20
            except psutil.Error:
                out[name] = 0.0
        return out

    def _sample(self) -> None:
        n = 0
        while not self.stop.wait(0.5):
            now = self.now()
            for name, mb in now.items():
                self.peak[name] = max(self.peak.get(name, 0.0), mb)
            if n % 10 == 0:
                self.series.append(now)
            n += 1

    def mark(self, label: str) -> None:
        self.marks[label] = self.now()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)


def cpu_seconds(procs: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU seconds (user + system) so far of this process (the publisher), the services, the broker, the registry
    and the receipt observer."""
    me = psutil.Process()
    found = {"publisher": me}
    pids = {p.pid: name for name, p in procs.items()}
    for child in me.children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        name = pids.get(child.pid) or ("broker" if "tansu" in cmd else "registry" if "registry" in cmd else None)
        if name:
            found[name] = child
    out: dict[str, float] = {}
    for name, p in found.items():
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        out[name] = t.user + t.system
    return out


def cores(before: dict[str, float], after: dict[str, float], name: str, holders: tuple[str, ...]) -> float:
    """CPU seconds ``name`` (or all subscribers) used between two ``cpu_seconds`` samples."""
    names = holders if name == "subscribers" else (name,)
    return sum(after.get(n, 0.0) - before.get(n, 0.0) for n in names)


def millis(value: Any) -> float:
    """A decoded timestamp-millis (a datetime from fastavro, or an int) as epoch milliseconds."""
    return value.timestamp() * 1000 if hasattr(value, "timestamp") else float(value)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def check_applied(outcomes: list[Outcome], phase: str) -> int:
    counts = Counter(r.outcome for r in outcomes)
    if set(counts) != {"applied"}:
        print(f"{phase}: outcomes {dict(counts)} (expected only 'applied')", file=sys.stderr)
    return counts["applied"]


def plan(count: int, keys: int, base: int) -> list[tuple[int, int]]:
    """(person, version) of ``count`` changes over ``keys`` people, every person's versions in order."""
    return [(base + i % keys, i // keys + 1) for i in range(count)]


def full_speed(publisher: Publisher, changes: list[tuple[int, int]], batch: int) -> tuple[float, float]:
    """Publish as fast as the Publisher goes, ``batch`` per call; (wall-clock start, seconds publishing)."""
    started, t0 = time.time(), time.perf_counter()
    for i in range(0, len(changes), batch):
        publisher.publish_many([change(n, v) for n, v in changes[i : i + batch]])
    return started, time.perf_counter() - t0


def fixed_rate(
    publisher: Publisher, changes: list[tuple[int, int]], rate: float, every_30s: Callable[[], None]
) -> float:
    """Publish ``rate`` changes/s, each sent at its scheduled moment without waiting for earlier acks; the
    achieved rate. ``recorded_at`` is stamped as each change is prepared. ``every_30s`` is called every 30 s."""
    futures = []
    start = time.perf_counter()
    sent = 0
    ticks = 0
    while sent < len(changes):
        if time.perf_counter() - start >= 30 * (ticks + 1):
            ticks += 1
            every_30s()
        due = min(len(changes), int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            prepared = publisher.prepare(change(*changes[sent]))
            futures.append((prepared, publisher.submit(prepared)))
            sent += 1
        time.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    elapsed = time.perf_counter() - start
    failed = [o for p, f in futures if not hasattr(o := publisher.settle(p, f), "offset")]
    if failed:
        raise SystemExit(f"fixed rate: {len(failed)} changes were not acknowledged: {failed[0]}")
    return len(changes) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=20_000, help="changes published at full speed")
    parser.add_argument("--keys", type=int, default=0, help="people the full-speed changes are about (default N/4)")
    parser.add_argument("--rate", type=float, default=1_000.0, help="changes/s of the fixed-rate phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the fixed-rate phase")
    parser.add_argument(
        "--holders", type=int, default=4, choices=range(1, len(ALL_HOLDERS) + 1), help="holders each change goes to"
    )
    parser.add_argument("--batch", type=int, default=500, help="distributor and subscriber batch size (their default)")
    parser.add_argument("--engine", choices=["faust", "loop"], default="faust", help="subscriber host")
    parser.add_argument("--publish-batch", type=int, default=1_000, help="changes per publish_many at full speed")
    parser.add_argument("--raw-records", type=int, default=100_000, help="records of the raw produce/consume")
    parser.add_argument(
        "--hops", action="store_true", help="also time each hop of the fixed-rate phase (reads the ledger too)"
    )
    parser.add_argument("--observe", type=Path, help=argparse.SUPPRESS)  # the receipt observer process
    args = parser.parse_args()
    if args.observe:
        observe(args.observe, args.hops)
        return
    folder = Path(tempfile.mkdtemp(prefix="onceonly-e2e-"))
    try:
        result = run(args, folder)
    except BaseException:
        print(f"service logs are kept in {folder}", file=sys.stderr)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result))


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    holders = ALL_HOLDERS[: args.holders]
    keys = args.keys or max(1, args.changes // 4)
    rate_count = int(args.rate * args.seconds)
    warm = plan(len(holders) * 50, len(holders) * 50, WARMUP_BASE)
    full = plan(args.changes, keys, FULL_BASE)
    steady = plan(rate_count, max(1, rate_count // 2), RATE_BASE)
    result: dict[str, Any] = {"bench": "e2e", "engine": args.engine, "holders": len(holders), "cpus": os.cpu_count()}
    result["load_avg_1m_at_start"] = round(os.getloadavg()[0], 2)  # other work on the machine, for context
    with scratch_cluster("e2e") as settings, Publisher(settings) as publisher:
        apply_topics(settings)
        value = publisher.prepare(change(0, 1)).value
        raw_produce, raw_consume = raw_rates(settings, args.raw_records, value)
        result |= {
            "raw_records": args.raw_records,
            "value_bytes": len(value),
            "raw_produce_per_s": round(raw_produce),
            "raw_consume_per_s": round(raw_consume),
        }
        receipts = Receipts(settings, folder, args.hops)
        try:
            with services(settings, folder, holders, args.batch, args.engine) as procs:

                def alive() -> None:
                    for name, p in procs.items():
                        if p.poll() is not None:
                            tail = (folder / f"{name}.log").read_text(errors="replace")[-2000:]
                            raise SystemExit(f"{name} exited with {p.returncode}; its log:\n{tail}")

                memory = Memory(procs)
                publisher.publish_many([change(n, v) for n, v in warm])
                receipts.wait({(person_id(n), v) for n, v in warm}, holders, 180, alive)
                memory.mark("start")

                cpu_before = cpu_seconds({**procs, "observer": receipts.proc})
                started, publishing = full_speed(publisher, full, args.publish_batch)
                got = receipts.wait({(person_id(n), v) for n, v in full}, holders, 600, alive)
                cpu = {
                    k: v - cpu_before.get(k, 0.0) for k, v in cpu_seconds({**procs, "observer": receipts.proc}).items()
                }
                applies = check_applied(got, "full speed")
                seconds = max(r.applied_ms for r in got) / 1000 - started
                memory.mark("after_full_speed")
                cpu["subscribers"] = sum(cpu.pop(h, 0.0) for h in holders)
                result |= {
                    "changes": args.changes,
                    "keys": keys,
                    "publish_per_s": round(args.changes / publishing),
                    "e2e_changes_per_s": round(args.changes / seconds),
                    "e2e_applies_per_s": round(applies / seconds),
                    "ratio_applies_to_raw_consume": round(applies / seconds / raw_consume, 4),
                    "full_speed_seconds": round(seconds, 2),
                    "cpu_us_per_change": {k: round(v / args.changes * 1e6) for k, v in sorted(cpu.items())},
                    "cpu_cores_used": round(sum(cpu.values()) / seconds, 2),
                }

                samples = [cpu_seconds(procs)]
                achieved = fixed_rate(publisher, steady, args.rate, lambda: samples.append(cpu_seconds(procs)))
                samples.append(cpu_seconds(procs))
                got = receipts.wait({(person_id(n), v) for n, v in steady}, holders, 600, alive)
                check_applied(got, "fixed rate")
                latency = [r.applied_ms - r.recorded_ms for r in got if r.outcome == "applied"]
                began = min(r.recorded_ms for r in got)
                windows: dict[int, list[float]] = {}
                for r in got:
                    windows.setdefault(int((r.recorded_ms - began) // 30_000), []).append(r.applied_ms - r.recorded_ms)
                memory.mark("end")
                idle_before = cpu_seconds(procs)
                time.sleep(5)  # nothing to do: what waiting costs (consumers polling a broker whose log has grown)
                idle = {k: (v - idle_before.get(k, 0.0)) / 5 for k, v in cpu_seconds(procs).items()}
                memory.close()
                result |= {
                    "rate": args.rate,
                    "rate_achieved": round(achieved),
                    "rate_changes": rate_count,
                    "p50_ms": round(percentile(latency, 0.50)),
                    "p99_ms": round(percentile(latency, 0.99)),
                    "max_ms": round(max(latency)),
                    "p99_ms_every_30s": [round(percentile(w, 0.99)) for _, w in sorted(windows.items())],
                    "fixed_rate_cores_used_every_30s": {
                        name: [round(cores(b, a, name, holders) / 30, 2) for b, a in pairwise(samples[:-1])]
                        for name in ("broker", "distributor", "subscribers")
                    },
                    "idle_cpu_share": {k: round(v, 3) for k, v in sorted(idle.items()) if k != "publisher"},
                }
                if args.hops:
                    decided = [(receipts.decided.get((r.holder, r.key, r.version)), r) for r in got]
                    hop1 = [d - r.recorded_ms for d, r in decided if d is not None]
                    hop2 = [r.applied_ms - d for d, r in decided if d is not None]
                    result["hops_ms"] = {
                        "recorded_to_distributed_p50_p99": [round(percentile(hop1, q)) for q in (0.5, 0.99)],
                        "distributed_to_applied_p50_p99": [round(percentile(hop2, q)) for q in (0.5, 0.99)],
                    }
                rss = {label: max(mark[h] for h in holders) for label, mark in memory.marks.items()}
                result |= {
                    "subscriber_rss_mb": round(rss["end"], 1),
                    "subscriber_rss_mb_start": round(rss["start"], 1),
                    "subscriber_rss_mb_after_full_speed": round(rss["after_full_speed"], 1),
                    "subscriber_rss_mb_end": round(rss["end"], 1),
                    "subscriber_rss_mb_peak": round(max(memory.peak[h] for h in holders), 1),
                    "subscriber_rss_mb_every_5s": [round(max(m[h] for h in holders)) for m in memory.series],
                    "distributor_rss_mb_start": round(memory.marks["start"]["distributor"], 1),
                    "distributor_rss_mb_end": round(memory.marks["end"]["distributor"], 1),
                }
        finally:
            receipts.close()
    result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    total = len(warm) + len(full) + len(steady)
    result["topic_records_at_end"] = {
        "change.person": total,
        "each inbox": total,
        "audit.deliveries": total * len(holders),
        "receipts": total * len(holders),
    }
    return result


if __name__ == "__main__":
    main()
