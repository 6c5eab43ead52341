"""``onceonly demo``: a city's departments on the embedded stack, a wave of changes recorded once, proof of it.

Everything runs for real: the broker, the registry, the distributor and one subscriber per holder (threads of
this process), each holder with its own SQLite (or PostgreSQL) database. The authorities hand their changes over
the way real systems would (``authorities.py``): public_security through its outbox and the outbox source,
civil_affairs through daily CSV exports and the snapshot-diff source, health through the HTTP gateway, hrss
through the Python SDK; the adapters run as child processes (``adapters.py``). One holder (``LATE``) joins after
the seed, as a department whose agreement was just signed: the distributor is restarted with its agreement, its
subscriber starts, and ``onceonly holder bootstrap``'s code sends it the current state before the wave. The run
ends when every holder's store equals the authorities' truth projected through its agreement, or when the time
limit passes.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from onceonly.catalog import schema_dir
from onceonly.demo.adapters import AdapterCounts, AdapterProcesses
from onceonly.demo.authorities import CivilRegistry, GatewayPoster, Hukou
from onceonly.demo.city import seed_city
from onceonly.demo.expected import verify
from onceonly.demo.holders import HOLDERS, create_store, holder_agreement, sqlite_store, subscriber_config
from onceonly.demo.lag import LagWatch, distributor_backlog
from onceonly.demo.receipts import ReceiptWatch
from onceonly.demo.truth import Record, Truth
from onceonly.demo.workload import Step, depositors, seed, wave
from onceonly.errors import ConfigError
from onceonly.settings import Settings
from onceonly.stack.cluster import cluster
from onceonly.standard import RegistryClient, Serde, declared_subjects

POISON = b"\x00\x00\x00\xff\xffnot an avro body"
BATCH = 500  # changes handed to the registration system and to the SDK (one publish_many) at a time
LATE = "civil_affairs"  # joins after the seed and is brought up by a bootstrap
MIN_PEOPLE = 10


@dataclass
class DemoOptions:
    people: int = 10_000
    rate: float | None = None
    database_url: str | None = None
    keep: bool = False
    keep_stores: bool = False
    state_dir: Path = Path(".onceonly")
    timeout: float = 600.0

    def check(self) -> None:
        """Refuse what cannot work before anything starts (``ConfigError``: one line for the user)."""
        if self.people < MIN_PEOPLE:
            raise ConfigError(f"--people {self.people}: the story needs at least {MIN_PEOPLE} residents")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"--rate {self.rate}: give a positive number of changes per second, or leave it out")
        if not self.timeout > 0:
            raise ConfigError(f"--timeout {self.timeout}: give a positive number of seconds")
        if self.database_url is not None:
            check_database_url(self.database_url)


def check_database_url(url: str) -> None:
    """A PostgreSQL server that answers (the demo creates a database per department there)."""
    import sqlalchemy as sa

    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(
            f"--database-url {url!r} is not a database URL", hint="e.g. postgresql+psycopg://user@127.0.0.1/postgres"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(
            f"--database-url {shown}: the demo needs a PostgreSQL server (SQLite is the default without the option)"
        )
    try:
        engine = sa.create_engine(parsed, connect_args={"connect_timeout": 5})
        with engine.connect():
            pass
        engine.dispose()
    except (sa.exc.SQLAlchemyError, ImportError) as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise ConfigError(f"--database-url {shown}: cannot connect: {reason}") from None


@dataclass
class DemoResult:
    holders: int
    converged: list[str]
    changes: int
    dead_letters: int
    poison_reason: str
    p50_ms: int
    p99_ms: int
    changes_per_s: float
    problems: dict[str, list[str]] = field(default_factory=dict)
    adapters: AdapterCounts = field(default_factory=AdapterCounts)
    joined: list[str] = field(default_factory=list)  # how the late holder was brought up, for the summary

    @property
    def ok(self) -> bool:
        return len(self.converged) == self.holders

    def line(self) -> str:
        return (
            f"converged {len(self.converged)}/{self.holders} holders, {self.changes} changes, "
            f"dead letters {self.dead_letters}, p50 {self.p50_ms} ms, p99 {self.p99_ms} ms, "
            f"{self.changes_per_s:.0f} changes/s"
        )


class Demo:
    """One run: topics, schemas, stores, services, adapters, workload, verification."""

    def __init__(self, opts: DemoOptions, base: Settings, say: Callable[[str], None]) -> None:
        from services.distributor import load_agreements

        self.opts = opts
        self.say = say
        self.run_id = uuid.uuid4().hex[:8]
        self.settings = base.model_copy(update={"topic_prefix": f"{base.topic_prefix}demo{self.run_id}."})
        self.agreements = load_agreements(schema_dir() / "agreements.yaml")
        self.serde = Serde(RegistryClient(self.settings.registry_url))
        self.folder = (opts.state_dir / "demo" / self.run_id).resolve()
        self.truth = Truth()
        self.log: list[dict[str, Any]] = []
        self.event_ids: set[str] = set()  # of the changes in ``log`` (the receipt watch tells fills from changes)
        self.interest: set[str] = set()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.stops: dict[str, threading.Event] = {}  # per service, so the distributor can be restarted alone
        self.stores: dict[str, str] = {}
        self.databases: list[str] = []  # created on --database-url's server by this run, dropped at its end
        self.configs: dict[str, Any] = {}
        self.distributor: Any = None
        self.subscribers: dict[str, Any] = {}
        self.waiting = {LATE: "joins after the seed"}  # holders not running yet, and why
        self.joined: list[str] = []
        # the authorities' systems and the adapters between them and the platform
        self.hukou: Hukou | None = None
        self.civil = CivilRegistry(self.folder / "civil_affairs" / "exports")
        self.adapters = AdapterProcesses(self.folder, self.settings, opts.state_dir)
        self.health: GatewayPoster | None = None
        self.sdk: Any = None  # hrss's Publisher
        self.counts = AdapterCounts()

    def prepare(self) -> None:
        from onceonly.topics import apply_topics

        apply_topics(self.settings)
        client = RegistryClient(self.settings.registry_url)
        for declared in declared_subjects(self.settings):
            client.register(declared.subject, declared.schema)
        self.folder.mkdir(parents=True, exist_ok=True)
        for holder in HOLDERS:
            agreement = holder_agreement(self.agreements, holder)
            url = self._store_url(holder)
            config = subscriber_config(agreement, url)
            create_store(url, config.sink)  # type: ignore[arg-type]  # the demo's sinks are SQL (holders.py)
            self.stores[holder], self.configs[holder] = url, config
        # public_security's registration system: its own database (SQLite), or schema hukou in its database
        if self.opts.database_url:
            self.hukou = Hukou(self.stores["public_security"], schema="hukou")
        else:
            self.hukou = Hukou(f"sqlite:///{self.folder / 'hukou.db'}")
        self.hukou.create()
        self.adapters.write_configs(self.hukou.url, self.hukou.schema, self.civil.folder)
        self.say(
            f"topics, schemas, {len(HOLDERS)} department stores and the authorities' systems ready under {self.folder}"
        )

    def _store_url(self, holder: str) -> str:
        if not self.opts.database_url:
            return sqlite_store(self.folder, holder)
        import sqlalchemy as sa

        name = f"demo_{self.run_id}_{holder}"
        admin = sa.create_engine(self.opts.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        self.databases.append(name)
        return self.opts.database_url.rsplit("/", 1)[0] + f"/{name}"

    def drop_databases(self) -> None:
        """Drop the databases this run created on ``--database-url``'s server (a demo must not litter a real
        server), unless ``--keep-stores``; after the run, when nothing of it is connected any more."""
        if not self.databases or self.opts.database_url is None:
            return
        import sqlalchemy as sa

        server = sa.make_url(self.opts.database_url).render_as_string(hide_password=True).rsplit("/", 1)[0]
        if self.opts.keep_stores:
            self.say(f"kept the {len(self.databases)} department databases on {server}: {', '.join(self.databases)}")
            return
        if self.hukou is not None:
            self.hukou.close()  # the last progress table counted the outbox again
        admin = sa.create_engine(self.opts.database_url, isolation_level="AUTOCOMMIT")
        left = list(self.databases)
        try:
            with admin.connect() as conn:
                for name in self.databases:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    left.remove(name)
        except sa.exc.SQLAlchemyError as e:
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            self.say(f"[yellow]could not drop {', '.join(left)} on {server} ({reason}); drop them by hand[/]")
        finally:
            admin.dispose()
        if not left:
            self.say(
                f"dropped the {len(self.databases)} department databases this run created on {server} "
                "(--keep-stores keeps them)"
            )

    def start_services(self) -> None:
        """The distributor with every agreement but the late holder's, and the other holders' subscribers."""
        from services.distributor import Agreements

        signed = Agreements([a for a in self.agreements if a.holder not in self.waiting], root=self.agreements.root)
        self.start_distributor(signed)
        for holder in HOLDERS:
            if holder not in self.waiting:
                self.start_subscriber(holder)

    def _start(self, name: str, worker: Any) -> None:
        stop = threading.Event()
        t = threading.Thread(target=worker.run, args=(stop,), daemon=True, name=name)
        self.stops[name] = stop
        t.start()
        self.threads.append(t)

    def start_distributor(self, agreements: Any) -> None:
        from services.distributor import make_distributor

        self.distributor = make_distributor(agreements, self.settings)
        self._start("distributor", self.distributor)

    def stop_distributor(self) -> None:
        """Stop the distributor alone (it finishes its batch in flight and commits)."""
        self.stops.pop("distributor").set()
        thread = next(t for t in self.threads if t.name == "distributor")
        thread.join(30)
        if thread.is_alive():
            raise RuntimeError("the distributor did not stop within 30 s")
        self.threads.remove(thread)

    def start_subscriber(self, holder: str) -> None:
        from services.subscriber import make_subscriber

        self.subscribers[holder] = make_subscriber(self.configs[holder], self.settings)
        self._start(f"subscriber.{holder}", self.subscribers[holder])

    def start_adapters(self) -> None:
        """The outbox source and the gateway as child processes; health's poster and hrss's SDK publisher here."""
        from onceonly.publisher import Publisher

        self.adapters.start()
        self.health = GatewayPoster(self.adapters.gateway_url, self.adapters.health_key, lanes=4)
        self.sdk = Publisher(self.settings)
        self.say(
            f"adapters running: outbox source, gateway on {self.adapters.gateway_url} (logs in {self.folder / 'logs'})"
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every service owns its partitions, so propagation times measure propagation, not group joins."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.distributor.assigned.is_set() and all(s.assigned for s in self.subscribers.values()):
                return
            time.sleep(0.2)
        self.say("[yellow]services still joining their groups; going on[/]")

    def join(self, holder: str) -> None:
        """``holder`` joins now, as a department whose agreement was just signed, the way an operator does it.

        The seed is distributed first (so what the holder lacks is the state, not changes in flight); the
        distributor is restarted with the holder's agreement (it registers the holder's inbox before it distributes,
        so from then on every change reaches the holder live); its subscriber starts; then the bootstrap
        (``onceonly holder bootstrap``'s ``run_bootstrap``) sends it the latest granted state of every entity.
        """
        from services.operator.bootstrap import run_bootstrap

        agreement = holder_agreement(self.agreements, holder)
        if not self.wait_for(lambda: distributor_backlog(self.settings) == 0, 300, every=0.5):
            self.say("[yellow]the distributor has not caught up with the seed yet; going on[/]")
        self.stop_distributor()
        self.start_distributor(self.agreements)
        del self.waiting[holder]
        self.start_subscriber(holder)
        self.wait_ready()
        self.say(f"{holder} joins under agreement {agreement.id}: distributor restarted with it, subscriber started")
        result = run_bootstrap(
            self.settings,
            self.agreements,
            holder,
            reason=f"joined under agreement {agreement.id} after the seed",
            operator="onceonly demo",
            serde=self.serde,
        )
        line = (
            f"{holder} bootstrapped (onceonly holder bootstrap): {result.tally.delivered} records sent "
            f"({result.tally.withheld} withheld) in {result.tally.elapsed:.1f} s, operation {result.operation_id}"
        )
        self.joined.append(line)
        self.say(line + "; live changes continue")

    def wait_for(self, done: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            if self.adapters.dead():
                return False
            time.sleep(every)
        return False

    def stop_adapters(self) -> None:
        """Stop the child processes and close the in-process clients (safe to call more than once)."""
        self.refresh_counts()
        if self.health is not None:
            self.health.close()
            self.health = None
        self.adapters.stop()
        if self.sdk is not None:
            self.sdk.close(5.0)
            self.sdk = None
        if self.hukou is not None:
            self.hukou.close()

    def stop_services(self) -> None:
        self.stop.set()
        for stop in self.stops.values():
            stop.set()
        for t in self.threads:
            t.join(15)

    # -- recording changes at the authorities ------------------------------------------------------------
    def record(self, steps: Iterator[Step]) -> int:
        """Each step at its authority, handed to its adapter (at ``rate`` per second when set); returns how many."""
        assert self.hukou is not None and self.health is not None
        batches: dict[str, list[Record]] = {"public_security": [], "hrss": []}
        started, count = time.monotonic(), 0
        for step in steps:
            self.log.append(step.change)
            self.event_ids.add(str(step.change["event_id"]))
            count += 1
            if step.authority == "health":
                self.health.submit(step.change)
            elif step.authority == "civil_affairs":
                self.civil.record(step.change)
            elif step.authority in batches:
                batches[step.authority].append(step.change)
            else:
                raise ValueError(f"no adapter for authority {step.authority}")
            if count % BATCH == 0:
                self._flush(batches)
                if self.opts.rate and (ahead := count / self.opts.rate - (time.monotonic() - started)) > 0:
                    time.sleep(ahead)
        self._flush(batches)
        return count

    def _flush(self, batches: dict[str, list[Record]]) -> None:
        assert self.hukou is not None
        self.hukou.record(batches["public_security"])
        if batches["hrss"]:
            now = int(time.time() * 1000)
            for change in batches["hrss"]:
                change["recorded_at"] = change["ts_ms"] = now
            self.sdk.publish_many(batches["hrss"])
            self.counts.sdk_published += len(batches["hrss"])
        for batch in batches.values():
            batch.clear()

    def outbox_drained(self) -> bool:
        assert self.hukou is not None
        written, sent = self.hukou.counts()
        return sent >= written

    def end_of_day(self, day: date) -> None:
        """health's posts answered, civil affairs' exports written and diffed (twice), a client retry replayed."""
        assert self.health is not None
        if not self.health.drain(120):
            self.say("[yellow]health: some gateway posts still unanswered after 120 s[/]")
        self.counts.gateway_replay_checked = self.health.repost_first()
        rows = self.civil.export(day)
        self.counts.snapshot_rows = sum(rows.values())
        first = self.adapters.snapshot_once()
        self.counts.snapshot_runs.append(first)
        self.say(
            f"civil affairs exported {self.counts.snapshot_rows} registrations; "
            f"snapshot diff published {first.published} in {first.seconds:.1f} s"
        )
        again = self.adapters.snapshot_once()
        self.counts.snapshot_runs.append(again)
        self.say(f"snapshot diff re-run on the same export: {again.published} published")

    def refresh_counts(self) -> AdapterCounts:
        """The adapters' counters now (the outbox figures from the registration database)."""
        c = self.counts
        if self.hukou is not None:
            with contextlib.suppress(Exception):  # a count for the display must never stop the demo
                c.outbox_written, c.outbox_published = self.hukou.counts()
                c.outbox_dead = self.hukou.dead_lettered()
        if self.health is not None:
            c.gateway_posted, c.gateway_accepted = self.health.posted, self.health.accepted
            c.gateway_retries, c.gateway_refused = self.health.retries, list(self.health.refused)
        return c

    def register_interest(self, share: int = 3) -> None:
        """The provident fund follows only its depositors: every ``share``-th person."""
        from services.distributor import InterestClient

        with InterestClient(self.settings) as client:
            for key in depositors(self.truth, share):
                client.register("housing_fund", "person", key, reason="depositor")
                self.interest.add(key)

    def inject_poison(self) -> None:
        """A record no adapter would let through, written straight to a change topic."""
        from confluent_kafka import Producer

        from onceonly.kafka import confluent_producer_config

        producer = Producer(confluent_producer_config(self.settings))
        producer.produce(self.settings.topic("change.person"), key=b"poison", value=POISON)
        producer.flush(15)

    def check(self) -> dict[str, list[str]]:
        """Per holder, what still differs from its entitlement (empty list: converged)."""
        return verify(self.agreements, self.stores, self.log, self.interest)

    def dead_letters(self) -> tuple[int, str]:
        """Records on every dead-letter topic, and the reason given for the poison record."""
        from confluent_kafka import Consumer, TopicPartition

        from onceonly.kafka import confluent_config

        topics = [self.settings.topic("dlq.distributor")] + [self.settings.topic(f"dlq.{h}") for h in HOLDERS]
        consumer = Consumer(confluent_config(self.settings, **{"group.id": "demo-dlq", "enable.auto.commit": False}))
        count, reason = 0, ""
        try:
            metadata = consumer.list_topics(timeout=10).topics
            consumer.assign([TopicPartition(t, p, 0) for t in topics if t in metadata for p in metadata[t].partitions])
            idle = time.monotonic() + 3
            while time.monotonic() < idle:
                for m in consumer.consume(100, timeout=0.5):
                    if m.error() is None:
                        count += 1
                        idle = time.monotonic() + 1
                        headers = dict(m.headers() or [])
                        if m.value() == POISON:
                            raw = headers.get("__connect.errors.exception.message") or b""
                            reason = raw.decode() if isinstance(raw, bytes) else str(raw)
        finally:
            consumer.close()
        return count, reason


def progress_table(demo: Demo, watch: ReceiptWatch, lag: LagWatch, problems: dict[str, list[str]]) -> Any:
    """Per holder: changes applied, fills (interest, bootstrap), skipped duplicates, lag, dead letters, state."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"onceonly demo {demo.run_id}: {len(demo.log)} changes recorded once", expand=False)
    for column in ("holder", "applied", "filled", "skipped", "lag", "dead letters", "state"):
        table.add_column(column, justify="left" if column in ("holder", "state") else "right")
    lags = lag.lag
    for holder in HOLDERS:
        o = watch.outcomes[holder]
        skipped = o.get("skipped_duplicate", 0) + o.get("skipped_stale", 0)
        state = problems.get(holder)
        shown = "…" if state is None else ("[green]converged[/]" if not state else f"{len(state)}+ differences")
        if holder in demo.waiting:
            shown = f"[dim]{demo.waiting[holder]}[/]"
        table.add_row(
            holder,
            str(o.get("applied", 0)),
            str(o.get("filled", 0)),
            str(skipped),
            str(lags[holder]) if holder in lags else "…",
            str(o.get("dead_lettered", 0)),
            shown,
        )
    return Group(table, Text(demo.refresh_counts().short()))


def run_demo(opts: DemoOptions, say: Callable[[str], None], live: Callable[[Any], None]) -> DemoResult:
    """The whole story; ``live`` receives a renderable to show progress."""
    opts.check()
    with cluster(opts.state_dir, keep=opts.keep, say=say) as base, contextlib.ExitStack() as cleanup:
        demo = Demo(opts, base, say)
        cleanup.callback(demo.drop_databases)  # after everything below stopped, whatever happened
        demo.prepare()
        watch = ReceiptWatch(demo.settings, demo.serde, demo.event_ids)
        lag = LagWatch(demo.settings, HOLDERS)
        problems: dict[str, list[str]] = {}
        count, reason, elapsed = 0, "", 0.0
        try:
            demo.start_services()
            demo.start_adapters()
            demo.wait_ready()
            watch.start()
            lag.start()
            args = (demo, watch, lag, problems, live)
            threading.Thread(target=_tick, args=args, daemon=True, name="progress").start()
            city = seed_city(opts.people)
            started = time.monotonic()
            demo.record(seed(city, demo.truth, households=True))
            households = len(demo.truth.live("household"))
            published = demo.wait_for(demo.outbox_drained, 300)
            say(
                f"seeded {opts.people} people in {households} households at public security"
                + ("; its outbox source published them" if published else "; [yellow]outbox not drained yet[/]")
            )
            demo.join(LATE)
            demo.register_interest()
            fills = len(demo.interest)
            filled = demo.wait_for(lambda: sum(watch.outcomes["housing_fund"].values()) >= fills, 120)
            say(f"housing fund registered interest in {fills} depositors" + (", filled" if filled else ""))
            demo.record(wave(city, demo.truth))
            demo.end_of_day(date.today())
            demo.inject_poison()
            say(f"recorded {len(demo.log)} changes at their authorities; waiting for every holder to converge")
            deadline = time.monotonic() + opts.timeout
            while time.monotonic() < deadline:
                problems.update(demo.check())
                if not any(problems.values()):
                    break
                if dead := [t.name for t in demo.threads if not t.is_alive()]:
                    say(f"[red]a service stopped unexpectedly: {', '.join(dead)}[/]; see the log above")
                    break
                if stopped := demo.adapters.dead():
                    for child in stopped:
                        say(f"[red]the {child.name} stopped unexpectedly[/]: {child.tail()}")
                    break
                time.sleep(2)
            elapsed = time.monotonic() - started
            count, reason = demo.dead_letters()
            while not reason and time.monotonic() < deadline:  # the distributor may reach the poison last
                time.sleep(1)
                count, reason = demo.dead_letters()
        finally:
            lag.stop()
            demo.stop_adapters()
            demo.stop_services()
            watch.stop()
        lag.measure()  # after the subscribers' last commits: the final table's lag
        live(progress_table(demo, watch, lag, problems))
        return DemoResult(
            holders=len(HOLDERS),
            converged=[h for h in HOLDERS if problems.get(h) == []],
            changes=len(demo.log),
            dead_letters=count,
            poison_reason=reason,
            p50_ms=watch.percentile(0.5),
            p99_ms=watch.percentile(0.99),
            changes_per_s=len(demo.log) / elapsed if elapsed else 0.0,
            problems={h: p for h, p in problems.items() if p},
            adapters=demo.counts,
            joined=demo.joined,
        )


def _tick(
    demo: Demo, watch: ReceiptWatch, lag: LagWatch, problems: dict[str, list[str]], live: Callable[[Any], None]
) -> None:
    while not demo.stop.is_set():
        live(progress_table(demo, watch, lag, problems))
        time.sleep(0.5)
