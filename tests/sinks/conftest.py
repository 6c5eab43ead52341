"""Sink fixtures: a department's person table on SQLite, PostgreSQL and MySQL/MariaDB, and a
department API over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sink_kit import DEATH_MAPPING, PERSON_DDL, PERSON_MAPPING
from sqlalchemy.engine import make_url

from connectors.sinks import SqlSinkConfig


def _sql_config(url: str, **mapping_overrides: Any) -> SqlSinkConfig:
    tables = {"person": {**PERSON_MAPPING, **mapping_overrides}, "death": DEATH_MAPPING}
    return SqlSinkConfig.model_validate({"kind": "sql", "url": url, "tables": tables})


@pytest.fixture
def sql_config() -> Callable[..., SqlSinkConfig]:
    """``sql_config(url, **mapping_overrides)``: the housing fund's person (and death) mapping on that database."""
    return _sql_config


@pytest.fixture
def mysql_db(mysql_url: str, namespace: str) -> Iterator[str]:
    """A fresh MySQL/MariaDB database for this test, dropped afterwards (the URL's user needs CREATE and DROP)."""
    name = "oo_" + namespace.strip(".")
    admin = sa.create_engine(mysql_url)
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield make_url(mysql_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty department database with the person table, on SQLite, on the machine's PostgreSQL and on its
    MySQL/MariaDB (``onceonly.testing.mysql_url``)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gjj.db'}"
    elif request.param == "mysql":
        url = str(request.getfixturevalue("mysql_db"))
    else:
        url = str(request.getfixturevalue("postgres_db"))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(PERSON_DDL)
    engine.dispose()
    return url


def _rows(
    url: str, sql: str = "SELECT sfzhm, xm, dz, xzqh, zt, bbh, gzbz, swrq FROM gjj_grxx ORDER BY sfzhm"
) -> list[Any]:
    """Rows as tuples, dates as ISO text (SQLite keeps them as text, PostgreSQL as dates)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(v.isoformat() if isinstance(v, date) else v for v in r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


@pytest.fixture
def rows() -> Callable[..., list[Any]]:
    """``rows(url, sql=...)``: what the department's table holds, as tuples."""
    return _rows


@dataclass
class DepartmentApi:
    """A department's HTTP API as a real server: stores by entity key, dedupes by Idempotency-Key, keeps versions."""

    url: str = ""
    store: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    seen_keys: set[str] = field(default_factory=set)
    failures_left: int = 0
    failure_status: int = 503
    down_after: int | None = None
    refuse_keys: set[str] = field(default_factory=set)
    outcome_for_keys: dict[str, str] = field(default_factory=dict)
    """Entity key -> the X-Onceonly-Outcome value answered with a 200, whatever the API did (a protocol mistake)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, idempotency_key: str, body: dict[str, Any]) -> tuple[int, dict[str, str]]:
        with self.lock:
            self.requests.append((idempotency_key, body))
            if self.failures_left > 0:
                self.failures_left -= 1
                return self.failure_status, {}
            if self.down_after is not None and len(self.requests) > self.down_after:
                return self.failure_status, {}
            if body["entity_key"] in self.refuse_keys:
                return 422, {}
            if body["entity_key"] in self.outcome_for_keys:
                return 200, {"X-Onceonly-Outcome": self.outcome_for_keys[body["entity_key"]]}
            if idempotency_key in self.seen_keys:
                return 200, {"X-Onceonly-Outcome": "skipped_duplicate"}
            key = body["entity_key"]
            if self.versions.get(key, 0) >= body["authority_version"]:
                return 409, {}
            self.seen_keys.add(idempotency_key)
            self.versions[key] = body["authority_version"]
            if body["action"] == "delete":
                self.store.pop(key, None)
            else:
                self.store[key] = body["data"]
            return 201, {}


@pytest.fixture
def department_api() -> Iterator[DepartmentApi]:
    api = DepartmentApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, headers = api.handle(self.headers.get("Idempotency-Key", ""), body)
            payload = b"refused: this record does not fit" if status == 422 else b""
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
