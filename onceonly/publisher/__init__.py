"""Publishing: turn a change a department recorded into exactly one change event on its topic.

from onceonly import Publisher
with Publisher() as p:
    p.publish(change)          # validated, keyed by entity, event_id derived, returns after the broker's ack
"""

from __future__ import annotations

from onceonly.publisher.aio import AsyncPublisher
from onceonly.publisher.coerce import Coercer, coerce_change, coerce_entity, entity_record_schema, to_millis
from onceonly.publisher.delivery import Ack
from onceonly.publisher.errors import BatchFailed, PublishFailed
from onceonly.publisher.heartbeat import Heartbeat
from onceonly.publisher.prepare import Prepared, Preparer, now_ms
from onceonly.publisher.sync import Publisher, PublishResult

__all__ = [
    "Ack",
    "AsyncPublisher",
    "BatchFailed",
    "Coercer",
    "Heartbeat",
    "Prepared",
    "Preparer",
    "PublishFailed",
    "PublishResult",
    "Publisher",
    "coerce_change",
    "coerce_entity",
    "entity_record_schema",
    "now_ms",
    "to_millis",
]
