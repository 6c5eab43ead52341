"""One publisher per outbox: a second ``source run`` on the same outbox stands by and takes over when the first dies.

Two publishers would each send the same rows (holders would skip the copies, but every copy costs a delivery and
a receipt, and the order of one aggregate's rows across the two is lost). Debezium solves it by running one task
per connector; without a coordinator, the database holding the outbox is the natural referee:

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection kept for the source's lifetime;
  the server frees it the moment that connection ends, so a SIGKILLed leader hands over within one poll.
- MySQL/MariaDB: ``GET_LOCK`` on the same kind of connection.
- SQLite: ``flock`` on a file next to the database; the kernel frees it when the process dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import IO

import sqlalchemy as sa

log = logging.getLogger(__name__)


def lock_name(table: str, schema: str | None) -> str:
    return f"onceonly-outbox:{schema + '.' if schema else ''}{table}"


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock``, derived from the outbox's name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class OutboxLock:
    """Held by at most one process at a time; ``held()`` re-checks, so a lost database session is noticed."""

    def __init__(self, engine: sa.Engine, table: str, schema: str | None) -> None:
        self.engine = engine
        self.name = lock_name(table, schema)
        self._conn: sa.Connection | None = None
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        """Try once, without waiting; True if this process now publishes for the outbox."""
        if self.held():
            return True
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            return self._flock()
        conn = self.engine.connect()
        try:
            if dialect == "postgresql":
                got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _advisory_key(self.name)})
            elif dialect in ("mysql", "mariadb"):
                got = conn.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": self.name[:64]})
            else:
                log.warning("outbox %s: no lock on %s; run one source per outbox", self.name, dialect)
                conn.close()
                return True
            ok = bool(got.scalar())
            conn.commit()  # end the implicit transaction; the session lock outlives it
        except BaseException:
            conn.close()
            raise
        if not ok:
            conn.close()
            return False
        self._conn = conn
        return True

    def held(self) -> bool:
        """Whether the lock is still ours: the session holding it may have been cut by the network or the server."""
        if self._file is not None:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.execute(sa.text("SELECT 1")).scalar()
            self._conn.commit()
            return True
        except sa.exc.DBAPIError:
            log.warning("outbox %s: the session holding the lock was lost; publishing pauses until retaken", self.name)
            self._drop()
            return False

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.invalidate()  # closing the session is what frees a server-side lock
                conn.close()
            except sa.exc.DBAPIError:
                pass

    def _flock(self) -> bool:
        database = self.engine.url.database
        if not database or database == ":memory:":
            return True  # a private in-memory database has no second reader
        path = Path(f"{database}.{self.name.split(':', 1)[1]}.lock")
        handle: IO[bytes] = open(path, "ab")  # noqa: SIM115 - held open for the life of the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        os.set_inheritable(handle.fileno(), False)
        self._file = handle
        return True
