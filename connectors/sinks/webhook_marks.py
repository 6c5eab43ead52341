"""The webhook sink's own version watermark, so a stale or repeated change never reaches the department's API.

Before a POST, a change is judged against its stored watermark by the SQL sink's version guard (``guard``): one
whose version was already taken is ``skipped_duplicate`` (a repeat of an earlier apply when it is the same event),
an older one ``skipped_stale``, and so is a change to a key since upgraded (15 to 18 digits); neither is sent.
After the API took a change (a 2xx saying ``applied``, or that it already had it) its watermark is written, and
an identifier upgrade also retires the old key, pointing it at the new one, as the SQL sink does. A change the
API refused (dead-lettered) or called stale moves nothing, and a watermark never goes back: the write re-reads
it under the store's lock and keeps the newer.

The POST and the write cannot share a transaction. A crash (or a store that fails) between the API's 2xx and the
write leaves the watermark behind; the change comes again and is sent again as the very same request, with the
same ``Idempotency-Key``, so an API that honours the key answers it as a duplicate, and the write happens then.

Deaths: unlike the SQL sink's ``ends`` mapping, the http sink does not know which record a death ends, so a death
keeps a watermark of its own (its repeats and stale versions are skipped) and ending the person is the API's.

The store is any SQLAlchemy database. By default a SQLite file per holder under the state dir: the workers of a
holder on one machine share it (each write takes SQLite's write lock). Workers on several machines need one
shared database (PostgreSQL) in ``watermark_url``, or each machine guards only what it sent itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from connectors.sinks.base import Outcome, Result
from connectors.sinks.change import Change
from connectors.sinks.config import HttpSinkConfig
from connectors.sinks.guard import Decision, guard
from connectors.sinks.sql_dialect import engine_or_config_error, is_transient
from connectors.sinks.watermarks import (
    add_missing_columns,
    apply_times,
    create_once,
    read_watermarks,
    watermark_table,
    write_watermarks,
)
from onceonly.errors import ConfigError

log = logging.getLogger(__name__)

HELD: frozenset[Outcome] = frozenset({"applied", "skipped_duplicate"})
"""API answers after which the API holds the change's version, so the watermark may say so."""


class WatermarkUnavailable(Exception):
    """The watermark store cannot be read or written right now: the sink stops where it is, as for a down API."""


def default_watermark_url(state_dir: Path, holder: str) -> str:
    """``<state dir>/subscribers/<holder>.sqlite``, beside the sources' ``<state dir>/sources/<name>.sqlite``."""
    return f"sqlite:///{(state_dir / 'subscribers' / f'{holder}.sqlite').resolve()}"


class WebhookWatermarks:
    """One holder's watermarks in their own database; ``deliver`` wraps each POST in the version guard."""

    def __init__(self, url: str, table: str, timeout: float) -> None:
        self.url = url
        self.shown = make_url(url).render_as_string(hide_password=True)
        self.table = table
        self.timeout = timeout
        self._engine: Engine | None = None
        self._marks: sa.Table | None = None

    def open(self) -> None:
        """Connect and create the table if needed; a URL this machine cannot use is one ``ConfigError`` line."""
        what = f"http sink watermark_url {self.shown}"
        database = make_url(self.url).database
        if make_url(self.url).get_backend_name() == "sqlite" and database:
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"{what}: cannot create its folder: {e}") from None
        engine = engine_or_config_error(self.url, self.timeout, what)
        marks = watermark_table(self.table, sa.MetaData())
        try:
            create_once(engine, marks)
            add_missing_columns(engine, marks)
        except sa.exc.SQLAlchemyError as e:
            engine.dispose()
            if is_transient(e):
                raise WatermarkUnavailable(f"{what} is not reachable: {e.__cause__ or e}") from e
            raise ConfigError(f"{what}: {e.__cause__ or e}") from None
        self._engine, self._marks = engine, marks

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def deliver(self, change: Change, send: Callable[[Change], Result]) -> Result:
        """``send(change)`` only if the guard admits it; record the version once the API holds it."""
        decision = self._decide(change)
        if decision.verdict != "apply":
            return Result(
                change, decision.verdict, decision.reason, repeat=decision.repeat, applied_at=decision.applied_at
            )
        result = send(change)
        if result.outcome in HELD:
            self._advance(decision.change)
        return result

    def _decide(self, change: Change) -> Decision:
        engine, marks = self._require_open()
        try:
            with engine.begin() as conn:
                decision = guard([change], read_watermarks(conn, marks, [change]))[0][0]
                return apply_times(conn, marks, [decision])[0] if decision.repeat else decision
        except (sa.exc.SQLAlchemyError, OSError) as e:
            raise WatermarkUnavailable(f"watermark store {self.shown}: {e.__cause__ or e}") from e

    def _advance(self, change: Change) -> None:
        """Write what the API now holds, unless another worker already wrote as much (a rebalance overlap)."""
        engine, marks = self._require_open()
        try:
            with engine.begin() as conn:
                decisions, changed = guard([change], read_watermarks(conn, marks, [change]))
                if decisions[0].verdict == "apply":
                    write_watermarks(conn, marks, changed)
        except (sa.exc.SQLAlchemyError, OSError) as e:
            if isinstance(e, sa.exc.SQLAlchemyError) and not is_transient(e):
                # The change's own fault (a key longer than the store's column): the API has it, so its answer
                # stands; a later copy of the change is simply sent again.
                log.warning(
                    "watermark of %s %s not stored: %s", change.entity_type, change.entity_key, e.__cause__ or e
                )
                return
            raise WatermarkUnavailable(
                f"watermark store {self.shown}, after the API took event {change.event_id}: {e.__cause__ or e}"
            ) from e

    def _require_open(self) -> tuple[Engine, sa.Table]:
        if self._engine is None or self._marks is None:
            raise RuntimeError("HttpSink.open() was not called")
        return self._engine, self._marks


def watermark_url(config: HttpSinkConfig, holder: str, state_dir: Path | None) -> str:
    """The configured ``watermark_url``, else the holder's file under ``state_dir`` (default: the settings')."""
    if config.watermark_url:
        return config.watermark_url
    if not holder:
        raise ConfigError(f"http sink {config.url}: no watermark_url, and no holder to name its default store")
    if state_dir is None:
        from onceonly.settings import load_settings

        state_dir = load_settings().state_dir
    return default_watermark_url(state_dir, holder)
