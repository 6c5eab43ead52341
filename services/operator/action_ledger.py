"""The operators' audit ledger: every re-drive and edit of a dead letter, with who did it and why, hash-chained.

Why a chain of its own (topic ``audit.operations``) rather than entries in ``audit.deliveries``: that chain has one
writer, the distributor, which keeps the head in memory while it runs; a second writer would fork it and
``onceonly audit verify`` would (rightly) report it broken. This chain is built with the same code
(``services.distributor.ledger``: ``Chain``, entry hash, ``verify``), so it is checked the same way.

It is also the durable answer to "is this dead letter still open?": a dead letter is closed once an entry names it.
Kafka keeps the topic for good, so the answer survives restarts, a lost Redis and the operator service itself; no
second store can disagree with the audit trail.

Operators are few, but two may act at once: an append holds a Redis lock (when Redis is configured) and re-reads the
chain's head under it, so two appends cannot fork the chain. Without Redis, one operator at a time is assumed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from onceonly.errors import BrokerUnavailable, OnceonlyError
from onceonly.kafka import confluent_producer_config
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde, SerdeError, platform_schema
from services.distributor.ledger import Chain, LedgerBroken, Verified, plain, verify
from services.operator.follow import Follower

log = logging.getLogger(__name__)

OPERATIONS_TOPIC = "audit.operations"
LOCK_SECONDS = 60


class LedgerBusy(OnceonlyError):
    """Another operator is writing to the ledger right now."""


@lru_cache(maxsize=1)
def action_schema() -> dict[str, Any]:
    """``schemas/avro/operator_action.avsc``, one object per process (the serde caches by schema object)."""
    return platform_schema("operator_action.avsc")


class ActionLedger:
    """Reads and appends ``audit.operations`` of one deployment."""

    def __init__(self, settings: Settings, serde: Serde | None = None) -> None:
        self.settings = settings
        self.serde = serde or Serde(RegistryClient(settings.registry_url))
        self.topic = settings.topic(OPERATIONS_TOPIC)
        self._follower = Follower(settings, [self.topic])
        self._entries: list[dict[str, Any]] = []
        self._read_lock = threading.Lock()

    def entries(self) -> list[dict[str, Any]]:
        """Every entry in chain order, decoded (timestamps as epoch ms); later calls read only the new ones."""
        with self._read_lock:
            for message in self._follower.new():
                try:
                    self._entries.append(plain(self.serde.decode(message.value()).record))
                except SerdeError as e:
                    raise LedgerBroken(
                        f"ledger broken: {self.topic} offset {message.offset()} is not an operator action: {e}"
                    ) from e
            return list(self._entries)

    def verify(self) -> Verified:
        return verify((f"offset {i}", e) for i, e in enumerate(self.entries()))

    def closed(self) -> dict[str, dict[str, Any]]:
        """Dead-letter id -> the entry that re-drove it (the latest, if it was re-driven more than once)."""
        return {str(e["dead_letter_id"]): e for e in self.entries()}

    @contextmanager
    def writer(self) -> Iterator[Writer]:
        """Exclusive appends: the lock, the current head, and a producer; entries are acknowledged before leaving."""
        with self._lock():
            entries = self.entries()
            chain = Chain.after(entries[-1] if entries else None)
            producer = Producer(confluent_producer_config(self.settings))
            writer = Writer(self, chain, producer, {str(e["dead_letter_id"]): e for e in entries})
            yield writer

    @contextmanager
    def _lock(self) -> Iterator[None]:
        if not self.settings.redis_url:
            yield
            return
        import redis

        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        lock = client.lock(f"{self.settings.topic_prefix}lock:{OPERATIONS_TOPIC}", timeout=LOCK_SECONDS)
        try:
            if not lock.acquire(blocking=True, blocking_timeout=LOCK_SECONDS / 2):
                raise LedgerBusy("another operator is re-driving dead letters right now", hint="try again shortly")
        except redis.RedisError as e:
            raise BrokerUnavailable(f"Redis did not answer for the operators' ledger lock: {e}") from e
        try:
            yield
        finally:
            try:
                lock.release()
            except redis.RedisError as e:  # it expires on its own
                log.warning("could not release the operators' ledger lock: %s", e)
            client.close()


class Writer:
    """Appends entries to the chain; each ``append`` returns only once the broker acknowledged the entry."""

    def __init__(self, ledger: ActionLedger, chain: Chain, producer: Producer, closed: dict[str, dict[str, Any]]):
        self.ledger = ledger
        self.chain = chain
        self.producer = producer
        self.closed = closed

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        entry = self.chain.append(fields)
        value = self.ledger.serde.encode(action_schema(), f"{self.ledger.topic}-value", entry)
        deliver(self.producer, self.ledger.topic, str(fields["dead_letter_id"]).encode(), value, [], partition=0)
        self.closed[str(entry["dead_letter_id"])] = entry
        return entry


def deliver(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
    *,
    partition: int | None = None,
    timeout: float = 30.0,
) -> Message:
    """Produce one record and wait for its acknowledgement; ``BrokerUnavailable`` when it did not land."""
    result: list[tuple[KafkaError | None, Message]] = []
    kwargs: dict[str, Any] = {
        "key": key,
        "value": value,
        "headers": headers,
        "on_delivery": lambda e, m: result.append((e, m)),
    }
    if partition is not None:
        kwargs["partition"] = partition
    producer.produce(topic, **kwargs)
    producer.flush(timeout)
    if not result:
        raise BrokerUnavailable(f"{topic} did not acknowledge within {timeout:.0f}s", hint="is the broker up?")
    error, message = result[0]
    if error is not None:
        raise BrokerUnavailable(f"{topic} refused the record: {error}")
    return message
