"""The few things that differ between SQLite, PostgreSQL and MySQL: engines, upserts, error classes.

Everything else in the SQL sink is portable SQLAlchemy Core.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.sql.dml import Insert

from onceonly.errors import ConfigError

# SQLSTATE classes (PostgreSQL, also used by MySQL drivers) that mean "the store", not "the record":
# connection exception, transaction rollback (deadlock, serialization), insufficient resources, operator intervention.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
# A table, column, schema or grant missing under a running subscriber: pause until someone fixes the store.
# 55P03: a lock wait ran out (lock_timeout), someone else holds the rows for now.
_TRANSIENT_SQLSTATES = frozenset({"42501", "42P01", "42703", "3F000", "55P03"})
# Data exception, integrity constraint violation: the record's fault, whatever error class the driver chose.
_RECORD_SQLSTATE_CLASSES = ("22", "23")
# MySQL 8's and MariaDB's CHECK constraint failures (pymysql raises MariaDB's as an OperationalError).
_RECORD_MYSQL_ERRNOS = frozenset({3819, 4025})
_DRIVER_EXTRAS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}


def create_engine(url: str, connect_timeout: float) -> Engine:
    """An engine whose every connection attempt and lock wait is bounded, so a dead store cannot hang shutdown."""
    backend = make_url(url).get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = connect_timeout
    elif backend in ("postgresql", "mysql", "mariadb"):
        connect_args["connect_timeout"] = max(2, math.ceil(connect_timeout))
    if backend in ("mysql", "mariadb"):
        # InnoDB waits 50 s for a row lock by default: bound it like the other stores' lock waits.
        connect_args["init_command"] = f"SET SESSION innodb_lock_wait_timeout = {max(1, math.ceil(connect_timeout))}"
    if backend == "postgresql":
        # force_custom_plan: psycopg prepares a statement after five runs, and PostgreSQL would then keep a generic
        # plan made while the watermark table was nearly empty (a sequential scan); the bench saw the watermark
        # read grow from 10 to 200 ms per batch as the table filled. Planning each run keeps the index scan.
        lock_ms = math.ceil(connect_timeout * 1000)
        connect_args["options"] = f"-c lock_timeout={lock_ms} -c plan_cache_mode=force_custom_plan"
    # No pool_pre_ping: it costs a round trip per batch, and a connection the database dropped already surfaces
    # as a transient error (connection_invalidated), which pauses and retries on a fresh connection.
    options: dict[str, Any] = {}
    if backend in ("mysql", "mariadb"):
        # InnoDB's default, REPEATABLE READ, gap-locks the absent keys a FOR UPDATE read of the watermarks asks for,
        # so two workers adding new entities deadlock each other (21 of 60 batches of 100, two workers, MariaDB 10.11).
        # READ COMMITTED locks only rows that exist, as PostgreSQL does; an entity stays in one worker's partition.
        options["isolation_level"] = "READ COMMITTED"
    engine = sa.create_engine(url, connect_args=connect_args, **options)
    if backend == "sqlite":
        _sqlite_write_transactions(engine)
    return engine


def engine_or_config_error(url: str, connect_timeout: float, what: str) -> Engine:
    """``create_engine``, with a URL this machine cannot use (unknown database, driver not installed) as one
    ``ConfigError`` line instead of a traceback; ``what`` names the setting, without its password."""
    try:
        return create_engine(url, connect_timeout)
    except (sa.exc.ArgumentError, ImportError) as e:
        extra = _DRIVER_EXTRAS.get(make_url(url).get_backend_name())
        hint = f"pip install 'onceonly[{extra}]'" if extra and isinstance(e, ImportError) else None
        raise ConfigError(f"{what}: {e}", hint=hint) from None


def _sqlite_write_transactions(engine: Engine) -> None:
    """Start every transaction with BEGIN IMMEDIATE: the write lock is taken before the watermarks are read,
    so two writers (two workers, or a worker and an operator) can never both pass the version guard."""

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def upsert_statement(
    dialect: str, table: sa.Table, key_columns: Sequence[str], columns: Sequence[str]
) -> Insert | None:
    """INSERT .. ON CONFLICT UPDATE for the dialects that have one; ``None`` means "use update-then-insert"."""
    update = [c for c in columns if c not in key_columns]
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(table)
        if not update:
            return lite.on_conflict_do_nothing(index_elements=list(key_columns))
        return lite.on_conflict_do_update(index_elements=list(key_columns), set_={c: lite.excluded[c] for c in update})
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(table)
        if not update:
            return pg.on_conflict_do_nothing(index_elements=list(key_columns))
        return pg.on_conflict_do_update(index_elements=list(key_columns), set_={c: pg.excluded[c] for c in update})
    if dialect in ("mysql", "mariadb"):
        if _other_unique_keys(table, key_columns, columns):
            return None
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        mstmt = mysql_insert(table)
        target = update or list(key_columns)
        return mstmt.on_duplicate_key_update({c: mstmt.inserted[c] for c in target})
    return None


def _other_unique_keys(table: sa.Table, key_columns: Sequence[str], columns: Sequence[str]) -> bool:
    """Whether a unique key besides ``key_columns`` could clash with the rows written. MySQL's ON DUPLICATE KEY
    UPDATE answers a clash on *any* unique key by updating the row that holds it: a new person whose unique
    address another person has would overwrite that other person and never be inserted (seen on MariaDB 10.11).
    Such tables take update-then-insert instead, so the clash is an IntegrityError (a dead letter), as it is on
    SQLite and PostgreSQL. An auto-increment key the rows do not write cannot clash."""
    key, written = set(key_columns), set(columns)
    uniques = [
        list(con.columns)
        for con in table.constraints
        if isinstance(con, sa.PrimaryKeyConstraint | sa.UniqueConstraint) and con.columns
    ]
    uniques += [list(i.columns) for i in table.indexes if i.unique]
    return any(
        {c.name for c in u} != key and not all(c.autoincrement is True and c.name not in written for c in u)
        for u in uniques
    )


@lru_cache(maxsize=256)
def _cached_upsert(
    dialect: str, table: sa.Table, key_columns: tuple[str, ...], columns: tuple[str, ...]
) -> Insert | None:
    """``upsert_statement`` built once per table and column set (building it cost a twentieth of a batch)."""
    return upsert_statement(dialect, table, key_columns, columns)


def upsert_rows(conn: sa.Connection, table: sa.Table, key_columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Write rows that all have the same columns, inserting or updating by key, as one bulk statement."""
    if not rows:
        return
    columns = list(rows[0])
    stmt = _cached_upsert(conn.dialect.name, table, tuple(key_columns), tuple(columns))
    if stmt is not None:
        conn.execute(stmt, rows)
        return
    for row in rows:
        where = sa.and_(*(table.c[k] == row[k] for k in key_columns))
        changed = conn.execute(sa.update(table).where(where).values(row)).rowcount
        if changed == 0:
            conn.execute(sa.insert(table).values(row))


def is_transient(error: BaseException) -> bool:
    """Whether a database error is about the store (retry later) rather than about the record (dead-letter it)."""
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        state = _sqlstate(error.orig)
        if state and (state[:2] in _TRANSIENT_SQLSTATE_CLASSES or state in _TRANSIENT_SQLSTATES):
            return True
        if (state and state[:2] in _RECORD_SQLSTATE_CLASSES) or _errno(error.orig) in _RECORD_MYSQL_ERRNOS:
            return False  # MySQL drivers raise some of these (a CHECK constraint) as OperationalError
        return isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.InternalError)
    return isinstance(error, sa.exc.DisconnectionError | sa.exc.TimeoutError | ConnectionError | TimeoutError)


def _errno(orig: BaseException | None) -> int | None:
    """A MySQL driver's error number (its first argument), for drivers that do not pass the SQLSTATE on."""
    code = orig.args[0] if orig is not None and orig.args else None
    return code if isinstance(code, int) else None


def _sqlstate(orig: BaseException | None) -> str | None:
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state if isinstance(state, str) else None
