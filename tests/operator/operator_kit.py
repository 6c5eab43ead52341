"""A small running system for operator tests: distributor, subscribers with their own SQLite stores, tracker.

Holders and agreements (person changes only, so every expectation is a plain projection of the authority's truth):
hrss gets every person; tax only persons of three districts (a condition); civil_affairs joins later (bootstrap).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition

from onceonly.demo.city import DISTRICTS, City, Person, seed_city
from onceonly.demo.expected import differences, expected_tables
from onceonly.demo.holders import create_store, sqlite_store, subscriber_config
from onceonly.demo.truth import Truth
from onceonly.kafka import confluent_config
from onceonly.publisher import Publisher
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde
from services.distributor import Agreements, load_agreements, make_distributor
from services.distributor.reading import partitions_of, read_to_end, reader, whole_topics
from services.subscriber import SubscriberConfig, make_subscriber
from services.tracker import Tracker

TAX_DISTRICTS = ["110101", "110105", "110108"]
PERSON_GRANTS: dict[str, list[str]] = {
    "hrss": ["id_number", "name", "birth_date", "status"],
    "tax": ["id_number", "name", "district_code", "address"],
    "civil_affairs": ["id_number", "name", "sex", "birth_date", "status"],
}
AGREEMENTS: dict[str, dict[str, Any]] = {
    "hrss": {
        "id": "hrss-test",
        "holder": "hrss",
        "purpose": "pension entitlement checks",
        "legal_basis": "Social Insurance Law, art. 16",
        "valid_from": "2020-01-01",
        "grants": {"person": PERSON_GRANTS["hrss"]},
    },
    "tax": {
        "id": "tax-test",
        "holder": "tax",
        "purpose": "taxpayer registration in three districts",
        "legal_basis": "Tax Collection Law, art. 6",
        "valid_from": "2020-01-01",
        "condition": {"field": "district_code", "in": TAX_DISTRICTS},
        "grants": {"person": PERSON_GRANTS["tax"]},
    },
    "civil_affairs": {
        "id": "mca-test",
        "holder": "civil_affairs",
        "purpose": "marriage registration checks",
        "legal_basis": "Regulations on Marriage Registration, art. 5",
        "valid_from": "2020-01-01",
        "grants": {"person": PERSON_GRANTS["civil_affairs"]},
    },
}


def write_agreements(path: Path, holders: list[str], starts: dict[str, datetime] | None = None) -> Path:
    """The agreements of ``holders``; ``starts`` moves an agreement's ``valid_from`` to that moment."""
    starts = starts or {}
    items = [{**AGREEMENTS[h], **({"valid_from": starts[h].isoformat()} if h in starts else {})} for h in holders]
    path.write_text(yaml.safe_dump({"agreements": items}, allow_unicode=True))
    return path


class People:
    """The public security bureau's truth about people, and the change events that moved it (in publish order)."""

    def __init__(self, seed: int = 7) -> None:
        self.city: City = seed_city(0, legacy_share=0, seed=seed)
        self.truth = Truth()
        self.log: list[dict[str, Any]] = []
        self.rng = random.Random(seed)
        self._lock = threading.Lock()

    def born(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            p = self.city.person()
            while p.id_number in self.city_keys():
                p = self.city.person()
            self.city.people.append(p)
            out.append(self.truth.change("person", p.id_number, p.record(), "registered"))
        return out

    def city_keys(self) -> set[str]:
        return {p.id_number for p in self.city.people}

    def moves(self, n: int) -> list[dict[str, Any]]:
        """Moves and renames of existing people (many cross the border of tax's districts)."""
        out = []
        for _ in range(n):
            p: Person = self.rng.choice(self.city.people)
            if self.rng.random() < 0.7:
                p.district_code = self.rng.choice(list(DISTRICTS))
                p.address = self.city.address(p.district_code)
                kind = "moved"
            else:
                p.name = self.city.name()
                kind = "renamed"
            out.append(self.truth.change("person", p.id_number, p.record(), kind))
        return out

    def publish(self, publisher: Publisher, changes: list[dict[str, Any]]) -> None:
        with self._lock:
            for i in range(0, len(changes), 500):
                batch = changes[i : i + 500]
                publisher.publish_many(batch)
                self.log.extend(batch)

    def mine(self, holder: str, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The changes a holder is entitled to (tax: in one of its districts before or after)."""
        if holder != "tax":
            return changes
        sides = ("after", "before")
        return [c for c in changes if any((c[side] or {}).get("district_code") in TAX_DISTRICTS for side in sides)]


class System:
    """The test's deployment: services in threads, one SQLite store per holder, people published by the SDK."""

    def __init__(
        self, settings: Settings, folder: Path, holders: list[str], starts: dict[str, datetime] | None = None
    ) -> None:
        self.settings = settings
        self.folder = folder
        self.agreements_file = write_agreements(folder / "agreements.yaml", holders, starts)
        self.agreements: Agreements = load_agreements(self.agreements_file)
        self.serde = Serde(RegistryClient(settings.registry_url))
        self.people = People()
        self.stores: dict[str, str] = {}
        self.configs: dict[str, SubscriberConfig] = {}
        self.distributor: Any = None
        self._stops: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._errors: list[BaseException] = []
        self.workers: dict[str, Any] = {}
        for holder in holders:
            self.add_store(holder)

    def add_store(self, holder: str) -> None:
        agreement = next(a for a in load_agreements(write_agreements(self.folder / "one.yaml", [holder])))
        url = sqlite_store(self.folder, holder)
        config = subscriber_config(agreement, url, batch_size=500)
        create_store(url, config.sink)  # type: ignore[arg-type]
        self.stores[holder], self.configs[holder] = url, config

    # -- services -----------------------------------------------------------------------------------------
    def _start(self, name: str, worker: Any) -> None:
        stop = threading.Event()

        def target() -> None:
            try:
                worker.run(stop)
            except BaseException as e:
                self._errors.append(e)

        thread = threading.Thread(target=target, name=name, daemon=True)
        self._stops[name], self._threads[name], self.workers[name] = stop, thread, worker
        thread.start()

    def stop(self, name: str) -> None:
        self._stops.pop(name).set()
        thread = self._threads.pop(name)
        thread.join(30)
        assert not thread.is_alive(), f"{name} did not stop within 30 s"
        self.workers.pop(name)
        self.check()

    def check(self) -> None:
        if self._errors:
            raise self._errors[0]

    def start_distributor(self, holders: list[str] | None = None) -> None:
        agreements = self.agreements
        if holders is not None:
            agreements = load_agreements(write_agreements(self.folder / "live.yaml", holders))
        self.distributor = make_distributor(agreements, self.settings)
        self._start("distributor", self.distributor)

    def start_subscriber(self, holder: str) -> None:
        self._start(f"subscriber.{holder}", make_subscriber(self.configs[holder], self.settings))

    def start_tracker(self) -> None:
        self._start("tracker", Tracker(self.settings, self.serde))

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the distributor and every subscriber own their partitions (group joins take seconds)."""

        def ready() -> bool:
            self.check()
            dist = self.workers.get("distributor")
            subs = [w for n, w in self.workers.items() if n.startswith("subscriber.")]
            return (dist is None or dist.assigned.is_set()) and all(s.assigned for s in subs)

        wait_for(ready, timeout, "services to join their groups")

    def stop_all(self) -> None:
        for name in list(self._threads):
            self._stops[name].set()
        for thread in list(self._threads.values()):
            thread.join(30)
        self._threads.clear()
        self._stops.clear()

    # -- what holders hold --------------------------------------------------------------------------------
    def differences(self, holder: str) -> list[str]:
        agreement = next(a for a in self.agreements if a.holder == holder)
        expected = expected_tables(agreement, self.configs[holder].sink, self.people.log, set())  # type: ignore[arg-type]
        return differences(expected, self.stores[holder])

    def wait_converged(self, holder: str, timeout: float = 60.0) -> None:
        last: list[str] = []

        def done() -> bool:
            self.check()
            last[:] = self.differences(holder)
            return not last

        wait_for(done, timeout, f"{holder} to converge (still: {last[:3]})")

    def distributed(self) -> int:
        return int(self.distributor.stats["changes"]) if self.distributor else 0

    def wait_distributed(self, n: int, timeout: float = 60.0) -> None:
        wait_for(lambda: self.check() is None and self.distributed() >= n, timeout, f"{n} changes distributed")

    # -- kafka --------------------------------------------------------------------------------------------
    def count(self, catalog_name: str) -> int:
        topic = self.settings.topic(catalog_name)
        return sum(1 for _ in read_to_end(self.settings, whole_topics(self.settings, [topic])))

    def committed(self, group: str, catalog_name: str) -> dict[tuple[str, int], int]:
        topic = self.settings.topic(catalog_name)
        consumer = reader(self.settings)
        try:
            parts = [TopicPartition(topic, p) for p in partitions_of(consumer, topic)]
        finally:
            consumer.close()
        cg = Consumer({**confluent_config(self.settings), "group.id": self.settings.topic(group)})
        try:
            return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in cg.committed(parts, timeout=10)}
        finally:
            cg.close()

    def inbox(self, holder: str) -> list[tuple[dict[str, bytes], dict[str, Any]]]:
        """(headers, decoded record) of everything in a holder's inbox."""
        topic = self.settings.topic(f"inbox.{holder}")
        out = []
        for m in read_to_end(self.settings, whole_topics(self.settings, [topic])):
            out.append((dict(m.headers() or []), dict(self.serde.decode(m.value()).record)))
        return out

    def read_receipts(self) -> list[dict[str, Any]]:
        topic = self.settings.topic("receipts")
        messages = read_to_end(self.settings, whole_topics(self.settings, [topic]))
        return [dict(self.serde.decode(m.value()).record) for m in messages]

    def skip_to_end(self, group: str, catalog_name: str) -> None:
        """Commit the group's offsets at the topic's end, as ``kafka-consumer-groups --reset-offsets --to-latest``
        would: what was not applied yet is never read by that group again."""
        topic = self.settings.topic(catalog_name)
        ends: dict[int, int] = {}
        for message in read_to_end(self.settings, whole_topics(self.settings, [topic])):
            ends[message.partition() or 0] = (message.offset() or 0) + 1
        cg = Consumer({**confluent_config(self.settings), "group.id": self.settings.topic(group)})
        try:
            cg.commit(offsets=[TopicPartition(topic, p, o) for p, o in ends.items()], asynchronous=False)
        finally:
            cg.close()


class Phases:
    """Prints how long each phase took (visible with ``pytest -s``), so a slow run says where."""

    def __init__(self) -> None:
        self.last = self.start = time.monotonic()

    def __call__(self, what: str) -> None:
        now = time.monotonic()
        print(f"  {what}: {now - self.last:.1f}s (total {now - self.start:.1f}s)")
        self.last = now


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextmanager
def system(
    settings: Settings, folder: Path, holders: list[str], starts: dict[str, datetime] | None = None
) -> Iterator[System]:
    s = System(settings, folder, holders, starts)
    try:
        yield s
    finally:
        s.stop_all()
