"""Where a snapshot comes from: a table or query of a department database, or a CSV export file."""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from connectors.sources.config import CsvInput, SqlInput


class SnapshotInput(Protocol):
    def describe(self) -> str: ...

    def rows(self) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


class SqlSnapshot:
    def __init__(self, config: SqlInput) -> None:
        self.config = config
        self.engine = sa.create_engine(config.url, pool_pre_ping=True)

    def describe(self) -> str:
        return self.config.table or "query"

    def rows(self) -> Iterator[dict[str, Any]]:
        if self.config.query is not None:
            query: sa.Executable = sa.text(self.config.query)
        else:
            assert self.config.table is not None
            table = sa.Table(self.config.table, sa.MetaData(), schema=self.config.db_schema, autoload_with=self.engine)
            query = sa.select(table)
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                yield dict(row)

    def close(self) -> None:
        self.engine.dispose()


class CsvSnapshot:
    """An export file; with a glob, the newest match (by modification time, then name) is the snapshot."""

    def __init__(self, config: CsvInput) -> None:
        self.config = config
        self.current: Path | None = None

    def path(self) -> Path:
        pattern = str(self.config.path)
        if not glob.has_magic(pattern):
            return self.config.path
        matches = glob.glob(pattern)
        if not matches:
            raise FileNotFoundError(f"no export matches {pattern}")
        return Path(max(matches, key=lambda p: (os.path.getmtime(p), p)))

    def describe(self) -> str:
        return (self.current or self.config.path).name

    def rows(self) -> Iterator[dict[str, Any]]:
        self.current = self.path()
        with self.current.open(newline="", encoding=self.config.encoding) as f:
            yield from csv.DictReader(f, delimiter=self.config.delimiter)

    def close(self) -> None:
        pass


def open_input(config: SqlInput | CsvInput) -> SnapshotInput:
    return SqlSnapshot(config) if isinstance(config, SqlInput) else CsvSnapshot(config)
