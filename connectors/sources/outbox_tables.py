"""The outbox and dead-letter tables as SQL, and PostgreSQL's wake-up call (LISTEN/NOTIFY).

The outbox belongs to the department's application (it writes rows in its own transactions); the connector only
reads it and sets ``sent_at``. The dead-letter table belongs to the connector and is created by it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)


def outbox_table(name: str = "outbox", schema: str | None = None, metadata: sa.MetaData | None = None) -> sa.Table:
    """The outbox as an application creates it (``create_outbox``), on SQLite and PostgreSQL alike."""
    return sa.Table(
        name,
        metadata or sa.MetaData(),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("aggregate_type", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Index(f"ix_{name}_unsent", "sent_at", "id"),
        schema=schema,
    )


def dead_letter_table(name: str, schema: str | None = None) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("aggregate_type", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text()),
        sa.Column("field", sa.String(200)),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
        schema=schema,
    )


def read_dead_letters(url: str, name: str, schema: str | None = None, last: int = 3) -> tuple[int, list[Any]] | None:
    """How many rows the connector dead-lettered, and the newest ``last`` as (outbox id, key, field, reason, when);
    None when the table is not there yet (the connector creates it when it first runs)."""
    engine = sa.create_engine(url)
    try:
        if not sa.inspect(engine).has_table(name, schema=schema):
            return None
        table = dead_letter_table(name, schema)
        c = table.c
        with engine.connect() as conn:
            count = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            newest = sa.select(c.outbox_id, c.aggregate_id, c.field, c.reason, c.failed_at).order_by(c.id.desc())
            return count, [tuple(r) for r in conn.execute(newest.limit(last))]
    finally:
        engine.dispose()


def create_outbox(engine: sa.Engine, name: str = "outbox", schema: str | None = None) -> sa.Table:
    """Create the outbox table (for applications and tests); does nothing when it exists."""
    table = outbox_table(name, schema)
    table.create(engine, checkfirst=True)
    return table


def install_notify_trigger(engine: sa.Engine, table: str, schema: str | None, channel: str) -> None:
    """A statement-level trigger that NOTIFYs ``channel`` after each insert, so the connector wakes at once."""
    qualified = f'"{schema}"."{table}"' if schema else f'"{table}"'
    function = f"onceonly_notify_{channel}"
    trigger = f"{table}_onceonly_notify"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$"
        )
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_trigger WHERE tgname = :name AND tgrelid = CAST(:table AS regclass)"),
            {"name": trigger, "table": qualified},
        ).first()
        if not exists:
            conn.exec_driver_sql(
                f"CREATE TRIGGER {trigger} AFTER INSERT ON {qualified} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )


class Listener:
    """A LISTEN connection on PostgreSQL; ``wait`` returns early when a NOTIFY arrives. Broken: falls back to sleep."""

    def __init__(self, url: sa.URL, channel: str) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channel = channel
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self._conninfo, autocommit=True)
        conn.execute(f"LISTEN {self._channel}")
        return conn

    def listen(self) -> None:
        """LISTEN now, before the source's first look: a row inserted while it looks (or sends its first heartbeat)
        then wakes it as soon as it waits, instead of at the next poll. Broken: ``wait`` tries again."""
        import psycopg

        try:
            self._conn = self._conn or self._connect()
        except psycopg.Error as e:
            log.warning("LISTEN %s not possible yet (%s); polling until it is", self._channel, e)

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Wait up to ``timeout`` for a notification; True when one came."""
        import psycopg

        deadline = time.monotonic() + timeout
        try:
            if self._conn is None:
                self._conn = self._connect()
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                if any(True for _ in self._conn.notifies(timeout=min(left, 0.5), stop_after=1)):
                    return True
        except psycopg.Error as e:
            log.warning("LISTEN %s lost its connection (%s); polling until it is back", self._channel, e)
            self.close()
            stop.wait(max(0.0, deadline - time.monotonic()))
        return False

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
