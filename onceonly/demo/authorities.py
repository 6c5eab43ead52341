"""The authorities' own systems, each handing its changes to the platform the way a real one would.

- public_security: the household registration system writes each change to its own resident or household table
  (its own column names) and, in the same transaction, a row to its outbox; the outbox source publishes the rows.
- civil_affairs: the marriage and adoption registries cannot be changed; they write a daily CSV export (Chinese
  headers, as exported), and the snapshot-diff source publishes what changed since the last export.
- health: birth and death certificates are posted to the HTTP gateway with the department's API key and an
  ``Idempotency-Key``, by a few concurrent senders (one lane per entity key, so one entity's posts stay in order).
- hrss: pension enrolments go through the Python SDK (``Publisher``) in the demo's own process.
"""

from __future__ import annotations

import csv
import json
import logging
import queue
import threading
import time
import zlib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connectors.sources import outbox_table
from onceonly.demo.truth import Record

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    raise TypeError(f"cannot put {type(value).__name__} into JSON")


def to_json(value: Any) -> str:
    return json.dumps(value, default=_plain, ensure_ascii=False, separators=(",", ":"))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- public_security: resident table + outbox, one transaction ------------------------------------------------

RESIDENT_COLUMNS = {  # standard field -> the registration system's own column (pinyin abbreviations)
    "id_number": "gmsfhm",
    "name": "xm",
    "sex": "xb",
    "birth_date": "csrq",
    "ethnicity": "mz",
    "household_id": "hh",
    "district_code": "ssxq",
    "address": "zz",
    "residence_type": "hjlx",
    "residence_permit_no": "jzzbh",
    "status": "zt",
}


HOUSEHOLD_COLUMNS = {  # standard field -> the household booklet table's own column
    "household_id": "hh",
    "head_id_number": "hzgmsfhm",
    "member_id_numbers": "cygmsfhm",  # JSON text
    "district_code": "ssxq",
    "address": "zz",
    "kind": "hlb",
}


KEY_FIELD = {"person": "id_number", "household": "household_id"}


def _stored(value: Any) -> Any:
    return to_json(value) if isinstance(value, list) else value


class Hukou:
    """public_security's household registration database: tables ``czrk`` (residents), ``hjb`` (household
    booklets) and ``outbox``."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.url = url
        self.schema = schema
        metadata = sa.MetaData()
        columns: list[sa.Column[Any]] = [sa.Column("gmsfhm", sa.String(18), primary_key=True)]
        columns += [sa.Column(c, sa.Date() if c == "csrq" else sa.Text()) for c in list(RESIDENT_COLUMNS.values())[1:]]
        self.resident = sa.Table("czrk", metadata, *columns, *self._stamps(), schema=schema)
        columns = [sa.Column("hh", sa.String(32), primary_key=True)]
        columns += [sa.Column(c, sa.Text()) for c in list(HOUSEHOLD_COLUMNS.values())[1:]]
        self.household = sa.Table("hjb", metadata, *columns, *self._stamps(), schema=schema)
        self.tables = {
            "person": (self.resident, RESIDENT_COLUMNS),
            "household": (self.household, HOUSEHOLD_COLUMNS),
        }
        self.outbox = outbox_table("outbox", schema, metadata)
        self.metadata = metadata
        sqlite = sa.make_url(url).get_backend_name() == "sqlite"
        self.engine = sa.create_engine(url, connect_args={"timeout": 30} if sqlite else {})
        if sqlite:

            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi: Any, _: Any) -> None:
                dbapi.execute("PRAGMA synchronous=NORMAL")

    @staticmethod
    def _stamps() -> list[sa.Column[Any]]:
        """The version and update time every registration table keeps."""
        return [sa.Column("bbh", sa.BigInteger(), nullable=False), sa.Column("gxsj", sa.BigInteger())]

    def create(self) -> None:
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # the connector reads while the clerks write
            elif self.schema:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        self.metadata.create_all(self.engine)

    def record(self, changes: list[Record]) -> None:
        """Each change is one transaction: its resident (or household) row and its outbox row commit together or
        not at all."""
        with self.engine.connect() as conn:
            for change in changes:
                entity_type = str(change["entity_type"])
                table, columns = self.tables[entity_type]
                key_column = table.c[columns[KEY_FIELD[entity_type]]]
                with conn.begin():
                    stamp = now_ms()
                    change["recorded_at"] = change["ts_ms"] = stamp
                    key, after = str(change["entity_key"]), change["after"]
                    if after is None:
                        conn.execute(sa.delete(table).where(key_column == key))
                    else:
                        row = {columns[f]: _stored(v) for f, v in after.items() if f in columns}
                        row.update(bbh=change["authority_version"], gxsj=stamp)
                        if change["op"] == "c":
                            conn.execute(sa.insert(table), row)
                        else:
                            old = change.get("supersedes_key") or key
                            conn.execute(sa.update(table).where(key_column == old).values(row))
                    payload = to_json({k: v for k, v in change.items() if k != "source"})
                    conn.execute(
                        sa.insert(self.outbox), {"aggregate_type": entity_type, "aggregate_id": key, "payload": payload}
                    )

    def counts(self) -> tuple[int, int]:
        """(outbox rows written, rows the connector marked sent)."""
        o = self.outbox.c
        query = sa.select(sa.func.count(), sa.func.count(o.sent_at)).select_from(self.outbox)
        with self.engine.connect() as conn:
            written, sent = conn.execute(query).one()
        return int(written), int(sent)

    def dead_lettered(self) -> int:
        """Rows the connector refused (its own ``outbox_dead_letter`` table, created when it starts)."""
        if not sa.inspect(self.engine).has_table("outbox_dead_letter", schema=self.schema):
            return 0
        table = sa.table("outbox_dead_letter", schema=self.schema)
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


# -- civil_affairs: the registries' daily CSV exports ---------------------------------------------------------

EXPORT_COLUMNS: dict[str, dict[str, str]] = {  # entity type -> export header -> standard field
    "marriage": {
        "登记证号": "registration_no",
        "甲方身份证号": "party_a_id_number",
        "乙方身份证号": "party_b_id_number",
        "婚姻状态": "status",
        "登记日期": "registered_on",
        "登记机关": "registry_office",
    },
    "adoption": {
        "登记证号": "registration_no",
        "被收养人身份证号": "child_id_number",
        "收养人身份证号": "adopter_id_numbers",
        "登记日期": "registered_on",
        "收养状态": "status",
    },
}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


class CivilRegistry:
    """civil_affairs' marriage and adoption registers; ``export`` writes the day's CSV files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.records: dict[str, dict[str, Record]] = {t: {} for t in EXPORT_COLUMNS}

    def pattern(self, entity_type: str) -> Path:
        return self.folder / f"{entity_type}-*.csv"

    def record(self, change: Mapping[str, Any]) -> None:
        table = self.records[str(change["entity_type"])]
        if change["after"] is None:
            table.pop(str(change["entity_key"]), None)
        else:
            table[str(change["entity_key"])] = dict(change["after"])

    def export(self, day: date) -> dict[str, int]:
        """Write ``<type>-YYYYMMDD.csv`` for each register (UTF-8 with BOM, as exported); rows per file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        rows: dict[str, int] = {}
        for entity_type, columns in EXPORT_COLUMNS.items():
            path = self.folder / f"{entity_type}-{day:%Y%m%d}.csv"
            tmp = path.with_suffix(".tmp")
            with tmp.open("w", newline="", encoding="utf-8-sig") as f:
                writer = csv.writer(f)
                writer.writerow(columns)
                for record in self.records[entity_type].values():
                    writer.writerow([_cell(record.get(field)) for field in columns.values()])
            tmp.replace(path)  # the source never sees half a file
            rows[entity_type] = len(self.records[entity_type])
        return rows


# -- health: posts to the HTTP gateway --------------------------------------------------------------------------

_BODY_FIELDS = (
    "entity_type",
    "entity_key",
    "authority_version",
    "op",
    "event_type",
    "event_id",
    "correction",
    "supersedes_key",
    "legal_basis",
    "restrictions",
    "before",
    "after",
)
_RETRY_STATUS = {409, 429, 500, 502, 503, 504}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def gateway_body(change: Mapping[str, Any]) -> bytes:
    """The ``POST /v1/changes`` body for a change (the gateway sets the authority from the API key)."""
    body: dict[str, Any] = {k: change.get(k) for k in _BODY_FIELDS if change.get(k) is not None}
    body["before"], body["after"] = change.get("before"), change.get("after")
    for name in ("valid_from", "recorded_at"):
        if change.get(name) is not None:
            body[name] = _iso(int(change[name]))
    return to_json(body).encode()


class GatewayPoster:
    """health's certificate system: posts each change with its API key and ``Idempotency-Key`` = the event id.

    ``lanes`` senders work at once; all changes of one entity go through the same lane, in order. A 503, a 409
    (the same key still in flight) or a lost connection is retried with the same key, so nothing is published twice.
    """

    def __init__(self, url: str, api_key: str, lanes: int = 4) -> None:
        self.url = url.rstrip("/") + "/v1/changes"
        self.api_key = api_key
        self.posted = self.accepted = self.replayed = self.retries = 0
        self.refused: list[str] = []
        self.first: tuple[str, bytes] | None = None
        self._lock = threading.Condition()
        self._pending = 0
        self._closed = threading.Event()
        self._lanes: list[queue.Queue[tuple[str, bytes] | None]] = [queue.Queue() for _ in range(lanes)]
        self._threads = [
            threading.Thread(target=self._send, args=(q,), name=f"health-poster-{i}", daemon=True)
            for i, q in enumerate(self._lanes)
        ]
        for t in self._threads:
            t.start()

    def submit(self, change: Record) -> None:
        change["recorded_at"] = change["ts_ms"] = now_ms()
        key, body = str(change["event_id"]), gateway_body(change)
        with self._lock:
            self._pending += 1
            self.posted += 1
            if self.first is None:
                self.first = (key, body)
        lane = zlib.crc32(str(change["entity_key"]).encode()) % len(self._lanes)
        self._lanes[lane].put((key, body))

    def drain(self, timeout: float) -> bool:
        """Until every submitted change was answered (or ``timeout`` passes)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Stop sending: what is still queued is dropped (the demo is ending), a post in flight is not retried."""
        self._closed.set()
        for q in self._lanes:
            q.put(None)
        for t in self._threads:
            t.join(10)

    def _send(self, lane: queue.Queue[tuple[str, bytes] | None]) -> None:
        import httpx

        with httpx.Client(timeout=30) as client:
            while (item := lane.get()) is not None:
                if self._closed.is_set():
                    self._answered(refused=f"{item[0]}: not sent, the demo stopped")
                    continue
                try:
                    self._post(client, *item)
                except Exception as e:  # keep the lane alive; the verification finds what did not land
                    log.warning("health: post failed: %s", e)
                    self._answered(refused=f"{item[0]}: {e}")

    def _post(self, client: Any, key: str, body: bytes) -> None:
        import httpx

        headers = {"X-API-Key": self.api_key, "Idempotency-Key": key, "Content-Type": "application/json"}
        delay = 0.2
        for attempt in range(12):
            try:
                response = client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as e:
                why = str(e) or type(e).__name__
            else:
                if response.status_code == 202:
                    self._answered(replayed=response.headers.get("Idempotent-Replayed") == "true")
                    return
                why = f"{response.status_code} {response.text[:200]}"
                if response.status_code not in _RETRY_STATUS:
                    self._answered(refused=f"{key}: {why}")
                    return
            if attempt == 11 or self._closed.is_set():
                break
            with self._lock:
                self.retries += 1
            self._closed.wait(delay)
            delay = min(delay * 2, 3.0)
        self._answered(refused=f"{key}: gave up after {attempt + 1} tries: {why}")

    def _answered(self, *, replayed: bool = False, refused: str | None = None) -> None:
        with self._lock:
            self._pending -= 1
            if refused is not None:
                self.refused.append(refused)
            else:
                self.accepted += 1
                self.replayed += replayed
            self._lock.notify_all()

    def repost_first(self) -> bool:
        """Send the first change again, as a client retrying after a lost answer: must be a replay, not a new event."""
        import httpx

        if self.first is None:
            return False
        key, body = self.first
        headers = {"X-API-Key": self.api_key, "Idempotency-Key": key, "Content-Type": "application/json"}
        response = httpx.post(self.url, content=body, headers=headers, timeout=30)
        return response.status_code == 202 and response.headers.get("Idempotent-Replayed") == "true"
