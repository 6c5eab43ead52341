"""Outbox source: rows an application wrote in its own transactions become change events, in id order.

A row is marked sent only after the broker acknowledged its event, so a crash at any point re-sends, never loses.
A re-sent row carries the same event id (the version defaults to the row id), so holders see one change.
A row that cannot be a valid change moves to the dead-letter table with the reason, and the source goes on.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from connectors.sources.config import OutboxSourceConfig
from connectors.sources.outbox_lock import OutboxLock
from connectors.sources.outbox_tables import Listener, dead_letter_table, install_notify_trigger
from connectors.sources.runner import Step
from onceonly.errors import ConfigError
from onceonly.publisher import Prepared, Publisher, PublishFailed, PublishResult, to_millis
from onceonly.standard import RecordInvalid

log = logging.getLogger(__name__)
_MARK_CHUNK = 500


def _created_ms(value: Any) -> int | None:
    """``created_at`` as epoch ms, whatever the database handed back (datetime, ISO text, epoch seconds/ms)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_millis(value)
    if isinstance(value, int | float):
        return int(value if value > 10**11 else value * 1000)
    return to_millis(datetime.fromisoformat(str(value)))


class OutboxSource:
    kind = "outbox"

    def __init__(self, config: OutboxSourceConfig, publisher: Publisher) -> None:
        self.name = config.name
        self.config = config
        self.publisher = publisher
        self.engine: sa.Engine | None = None
        self.listener: Listener | None = None
        self.lock: OutboxLock | None = None
        self.standing_by = False
        names = ("id", "aggregate_type", "aggregate_id", "payload", "created_at", "sent_at")
        self.outbox = sa.table(config.table, *(sa.column(n) for n in names), schema=config.db_schema)
        self.dead = dead_letter_table(config.dead_letter_table, config.db_schema)

    # -- lifecycle ------------------------------------------------------------------------------------
    def open(self) -> None:
        url = sa.make_url(self.config.url)
        args = {"timeout": 30} if url.get_backend_name() == "sqlite" else {}
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args=args)
        try:
            if not sa.inspect(engine).has_table(self.config.table, schema=self.config.db_schema):
                raise ConfigError(
                    f"source {self.name}: table {self.config.table} does not exist in {url.render_as_string()}",
                    hint="the application creates it (connectors.sources.create_outbox shows the columns)",
                )
            self.dead.create(engine, checkfirst=True)
            if engine.dialect.name == "postgresql" and self.config.notify_channel:
                if self.config.install_notify_trigger:
                    install_notify_trigger(engine, self.config.table, self.config.db_schema, self.config.notify_channel)
                self.listener = Listener(url, self.config.notify_channel)
                self.listener.listen()
        except BaseException:
            engine.dispose()
            raise
        self.engine = engine
        self.lock = OutboxLock(engine, self.config.table, self.config.db_schema)

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
        if self.listener is not None:
            self.listener.close()
        if self.engine is not None:
            self.engine.dispose()

    def wait(self, timeout: float, stop: threading.Event) -> None:
        """Sleep until the next poll, or until PostgreSQL says a row was inserted."""
        if self.listener is not None:
            self.listener.wait(timeout, stop)
        else:
            stop.wait(timeout)

    # -- work -----------------------------------------------------------------------------------------
    def pending(self) -> int:
        assert self.engine is not None
        with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(self.outbox).where(self.outbox.c.sent_at.is_(None))
            return int(conn.execute(query).scalar_one())

    def step(self) -> Step:
        """Publish the oldest unsent rows (one batch); mark the acknowledged ones sent. A standby publishes nothing."""
        assert self.engine is not None and self.lock is not None
        if not self.lock.acquire():
            if not self.standing_by:
                log.info("source %s: standing by, another instance publishes %s", self.name, self.lock.name)
            self.standing_by = True
            return Step()
        if self.standing_by:
            log.info("source %s: took over publishing %s", self.name, self.lock.name)
            self.standing_by = False
        o = self.outbox.c
        query = (
            sa.select(o.id, o.aggregate_type, o.aggregate_id, o.payload, o.created_at)
            .where(o.sent_at.is_(None))
            .order_by(o.id)
            .limit(self.config.batch_size)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return Step()
        ready: list[tuple[Any, Prepared]] = []
        dead: list[tuple[Any, RecordInvalid]] = []
        for row in rows:
            try:
                ready.append((row, self.publisher.prepare(self.change(row), source=self.source_block(row))))
            except RecordInvalid as e:
                dead.append((row, e))
        if dead:
            self.dead_letter(dead)
        outcomes = self.publisher.send([p for _, p in ready])
        acked = [row.id for (row, _), out in zip(ready, outcomes, strict=True) if isinstance(out, PublishResult)]
        self.mark_sent(acked)
        failed = [(row, out) for (row, _), out in zip(ready, outcomes, strict=True) if isinstance(out, PublishFailed)]
        final = [(row, RecordInvalid("", f"the broker refused it: {out}")) for row, out in failed if not out.retriable]
        if final:
            self.dead_letter(final)
        if len(failed) > len(final):
            first = next(out for _, out in failed if out.retriable)
            raise PublishFailed(f"{len(failed) - len(final)} of {len(rows)} rows not acknowledged: {first}")
        return Step(published=len(acked), rejected=len(dead) + len(final), more=len(rows) == self.config.batch_size)

    def change(self, row: Any) -> dict[str, Any]:
        """The change a row describes: the payload, with type, key, authority, version and time from the row."""
        payload = row.payload
        if isinstance(payload, bytes | str):
            try:
                payload = json.loads(payload)
            except json.JSONDecodeError as e:
                raise RecordInvalid("payload", f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        if not isinstance(payload, dict):
            raise RecordInvalid("payload", f"must be a JSON object, got {type(payload).__name__}")
        entity_type = self.config.aggregate_types.get(row.aggregate_type, row.aggregate_type)
        from_row = {
            "entity_type": entity_type,
            "entity_key": str(row.aggregate_id),
            "authority": self.config.department,
        }
        for name, value in from_row.items():
            if payload.setdefault(name, value) != value:
                raise RecordInvalid(name, f"the payload says {payload[name]!r}, the row says {value!r}")
        payload.setdefault("authority_version", row.id)
        if "recorded_at" not in payload:
            try:
                payload["recorded_at"] = _created_ms(row.created_at)
            except ValueError:
                raise RecordInvalid("created_at", f"{row.created_at!r} is not a timestamp") from None
            if payload["recorded_at"] is None:
                del payload["recorded_at"]
        return payload

    def source_block(self, row: Any) -> dict[str, Any]:
        return {"system": self.config.system, "table": self.config.table, "position": str(row.id)}

    def mark_sent(self, ids: list[int]) -> None:
        """One transaction: a crash before it commits re-sends the rows (same event ids), never skips them."""
        if not ids:
            return
        assert self.engine is not None
        with self.engine.begin() as conn:
            for i in range(0, len(ids), _MARK_CHUNK):
                chunk = ids[i : i + _MARK_CHUNK]
                conn.execute(
                    sa.update(self.outbox)
                    .where(self.outbox.c.id.in_(chunk))
                    .values(sent_at=sa.func.current_timestamp())
                )

    def dead_letter(self, rows: list[tuple[Any, RecordInvalid]]) -> None:
        """Move rows to the dead-letter table with the reason (one transaction: copied and removed together)."""
        assert self.engine is not None
        for row, error in rows:
            log.warning("source %s: outbox row %s dead-lettered: %s", self.name, row.id, error)
        records = [
            {
                "outbox_id": row.id,
                "aggregate_type": str(row.aggregate_type),
                "aggregate_id": str(row.aggregate_id),
                "payload": row.payload if isinstance(row.payload, str) else json.dumps(row.payload),
                "created_at": None if row.created_at is None else str(row.created_at),
                "field": error.field or None,
                "reason": error.reason,
            }
            for row, error in rows
        ]
        with self.engine.begin() as conn:
            conn.execute(sa.insert(self.dead), records)
            conn.execute(sa.delete(self.outbox).where(self.outbox.c.id.in_([row.id for row, _ in rows])))
