"""The replay ledger (``audit.replays``): every replay and bootstrap, who ran it and why, and every record it sent.

Why not entries in ``audit.deliveries``: that chain has one writer, the distributor, which keeps the head in memory
while it runs; an operator appending there would fork it, and ``onceonly audit verify`` would (rightly) call the
ledger broken. So redeliveries get a chain of their own, built with the same code (``services.distributor.ledger``:
``Chain``, the entry hash, ``verify``) and checked the same way (``onceonly holder operations --verify``).

Two operators may redeliver to two holders at once, so appends take a Redis lock and continue the chain from its
real head. Each writer leaves the head it wrote (seq, hash, offset) in Redis and deletes it before writing, so a
head found there is current and costs one lookup; without it (a writer died mid-write, Redis lost it) the head is
read from the topic as the distributor finds its own (ListOffsets on Apache Kafka; with ``broker_quirks: tansu`` a
scan to the fetch high watermark). Entries are acknowledged before an append returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from onceonly.errors import BrokerUnavailable
from onceonly.kafka import confluent_producer_config
from onceonly.settings import Settings
from onceonly.standard import RegistryClient, Serde, SerdeError, platform_schema, subject_for
from services.distributor.ledger import Chain, LedgerBroken, Verified, plain, verify
from services.distributor.reading import read_to_end, reader
from services.operator.holder_lock import HolderLock, Owner, redis_client

REPLAYS_TOPIC = "audit.replays"

# Every field of an entry, so the hash of what is sealed equals the hash of what is read back (Avro fills defaults).
_BLANK: dict[str, Any] = {
    "reason": None,
    "detail": None,
    "count": None,
    "event_id": None,
    "change_event_id": None,
    "agreement_id": None,
    "purpose": None,
    "legal_basis": None,
    "entity_type": None,
    "entity_key": None,
    "authority_version": None,
    "fields": [],
    "withheld_fields": [],
    "source": None,
    "inbox": None,
}


@lru_cache(maxsize=1)
def replay_schema() -> dict[str, Any]:
    """``schemas/avro/replay_entry.avsc``, one object per process (the serde caches by schema object)."""
    return platform_schema("replay_entry.avsc")


def entry(**fields: Any) -> dict[str, Any]:
    """A complete, unsealed entry: blanks for everything not given."""
    return {**_BLANK, **fields}


@dataclass
class _Head:
    chain: Chain
    offset: int  # offset of the entry the chain ends with (-1: empty ledger)


class ReplayLedger:
    """Reads and appends ``audit.replays`` of one deployment."""

    def __init__(self, settings: Settings, serde: Serde | None = None) -> None:
        self.settings = settings
        self.serde = serde or Serde(RegistryClient(settings.registry_url))
        self.topic = settings.topic(REPLAYS_TOPIC)
        self.subject = subject_for(self.topic)
        self._head: _Head | None = None
        self._producer: Producer | None = None

    def entries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(offset N, entry)`` of the whole ledger, in order, timestamps as epoch ms."""
        for message in read_to_end(self.settings, {(self.topic, 0): 0}):
            yield f"offset {message.offset()}", self._decode(message)

    def verify(self) -> Verified:
        return verify(self.entries())

    def append(self, entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Seal and write ``entries`` after the chain's current head; returns them sealed, once acknowledged."""
        if not entries:
            return []
        client = redis_client(self.settings)
        owner = Owner.me("ledger append", self.topic)
        lock = HolderLock(client, f"{self.settings.topic_prefix}lock:{REPLAYS_TOPIC}", owner, what=self.topic)
        lock.acquire_waiting(timeout=30)
        try:
            head = self._current_head(client)
            chain = Chain(head.chain.seq, head.chain.head)
            sealed = [chain.append(e) for e in entries]
            client.delete(self.head_key)  # while entries are in flight, no writer may trust a remembered head
            last = self._write(sealed)
            self._head = _Head(chain, last)
            client.set(self.head_key, json.dumps({"seq": chain.seq, "hash": chain.head, "offset": last}))
            return sealed
        except BaseException:
            self._head = None  # unknown what landed: find the head again next time
            raise
        finally:
            lock.release()
            client.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None

    @property
    def head_key(self) -> str:
        return f"{self.settings.topic_prefix}head:{REPLAYS_TOPIC}"

    def _current_head(self, client: redis.Redis) -> _Head:
        """The chain's head. Every writer appends under the lock and leaves the head it wrote in Redis, deleting it
        before it writes; so a head found there is current, and a missing one (a writer died mid-write, Redis lost
        it) is read from the topic: after our own last entry if we have one, else the ledger's last record."""
        try:
            remembered = json.loads(client.get(self.head_key) or "null")
        except ValueError:
            remembered = None
        if isinstance(remembered, dict):
            return _Head(Chain(int(remembered["seq"]), str(remembered["hash"])), int(remembered["offset"]))
        if self._head is not None:
            return self._head_from(self._head.offset, self._head)
        return self._tail()

    def _tail(self) -> _Head:
        """The newest entry, found as the distributor finds its ledger's (``recovery.ledger_tail``): ListOffsets
        on Apache Kafka; on the embedded broker (``broker_quirks: tansu``) a scan to the fetch high watermark."""
        consumer = reader(self.settings)
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=10)
        except KafkaException as e:
            raise BrokerUnavailable(f"could not read the offsets of {self.topic}: {e}") from e
        finally:
            consumer.close()
        start = low if self.settings.broker_quirks == "tansu" else max(low, high - 1)
        return self._head_from(start, None)

    def _head_from(self, offset: int, known: _Head | None) -> _Head:
        last = None
        for message in read_to_end(self.settings, {(self.topic, 0): offset}):
            last = message
        if last is None:
            return known or _Head(Chain(), -1)
        if known is not None and last.offset() == known.offset:
            return known
        return _Head(Chain.after(self._decode(last)), last.offset() or 0)

    def _decode(self, message: Message) -> dict[str, Any]:
        try:
            return plain(self.serde.decode(message.value()).record)
        except SerdeError as e:
            raise LedgerBroken(
                f"ledger broken: {self.topic} offset {message.offset()} is not a replay entry: {e}"
            ) from e

    def _write(self, sealed: list[dict[str, Any]]) -> int:
        """Produce in order to the one partition and wait for every acknowledgement; the last entry's offset."""
        if self._producer is None:
            self._producer = Producer(confluent_producer_config(self.settings))
        producer = self._producer
        errors: list[str] = []
        offsets: list[int] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                offsets.append(msg.offset() or 0)

        for e in sealed:
            value = self.serde.encode(replay_schema(), self.subject, e)
            while True:
                try:
                    producer.produce(
                        self.topic, key=str(e["holder"]).encode(), value=value, partition=0, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
        if producer.flush(30) > 0 or errors or len(offsets) != len(sealed):
            why = errors[0] if errors else "no acknowledgement within 30s"
            raise BrokerUnavailable(f"{self.topic} did not take the replay entries: {why}", hint="is the broker up?")
        return max(offsets)
